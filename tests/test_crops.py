from PIL import Image

from epaiqa.data.crops import bbox_to_pixels, crop_region, window_in_region


def test_bbox_is_centre_and_size() -> None:
    assert bbox_to_pixels([0.5, 0.5, 0.5, 0.25], 200, 100) == (50, 38, 150, 62)


def test_margin_grows_box_and_is_clamped() -> None:
    assert bbox_to_pixels([0.5, 0.5, 0.2, 0.2], 100, 100, margin=0.5) == (30, 30, 70, 70)
    assert bbox_to_pixels([0.1, 0.1, 0.2, 0.2], 100, 100, margin=0.5) == (0, 0, 30, 30)


def test_tiny_box_is_at_least_one_pixel() -> None:
    left, top, right, bottom = bbox_to_pixels([0.999, 0.999, 0.0001, 0.0001], 10, 10)
    assert right - left >= 1 and bottom - top >= 1
    assert 0 <= left < right <= 10 and 0 <= top < bottom <= 10


def test_crop_region_size() -> None:
    image = Image.new("RGB", (200, 100))
    assert crop_region(image, [0.5, 0.5, 0.5, 0.5]).size == (100, 50)


def test_native_window_inside_region_and_image() -> None:
    # region 100x100 at (50..150); a 64 window centred, at jitter 0 and 1 it touches the region's edges
    assert window_in_region([0.5, 0.5, 0.5, 0.5], 200, 200, 64) == (68, 68, 132, 132)
    assert window_in_region([0.5, 0.5, 0.5, 0.5], 200, 200, 64, (0.0, 1.0)) == (50, 86, 114, 150)
    # a region smaller than the window: centred on it, shifted to stay inside the image
    assert window_in_region([0.05, 0.5, 0.1, 0.1], 200, 200, 64) == (0, 68, 64, 132)
    # an image smaller than the window: the window shrinks to the image
    assert window_in_region([0.5, 0.5, 0.5, 0.5], 40, 30, 64) == (0, 0, 40, 30)
