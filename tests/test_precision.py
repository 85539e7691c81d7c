"""``trainer.precision=auto``: bf16 autocast only where the CPU (or GPU) computes bf16 natively, said in one line."""

from pathlib import Path

import pytest

from epaiqa import precision
from epaiqa.precision import BF16, FP32, choose_precision, cpu_bf16_flag

FLAGS = "processor\t: 0\nflags\t\t: fpu sse avx2 {extra}\n"


@pytest.mark.parametrize(
    ("extra", "expected"), [("amx_bf16 amx_tile", "amx_bf16"), ("avx512_bf16", "avx512_bf16"), ("", None)]
)
def test_cpu_bf16_flag_reads_cpuinfo(tmp_path: Path, extra: str, expected: str | None) -> None:
    (tmp_path / "cpuinfo").write_text(FLAGS.format(extra=extra))
    assert cpu_bf16_flag(tmp_path / "cpuinfo") == expected
    assert cpu_bf16_flag(tmp_path / "missing") is None


def test_auto_takes_bf16_on_a_cpu_with_amx(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_flag", lambda: "amx_bf16")
    with caplog.at_level("INFO", logger="epaiqa.precision"):
        assert choose_precision("auto", "cpu") == BF16
    assert "amx_bf16" in caplog.text


def test_auto_refuses_bf16_on_a_cpu_without_it_in_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_flag", lambda: None)
    with caplog.at_level("WARNING", logger="epaiqa.precision"):
        assert choose_precision("auto", "cpu") == FP32
    [record] = caplog.records
    assert "32-true" in record.message and "amx_bf16" in record.message and "\n" not in record.message


@pytest.mark.parametrize("given", ["32-true", "bf16-mixed", 16, None])
def test_an_explicit_precision_is_kept(given: object) -> None:
    assert choose_precision(given, "cpu") == given
