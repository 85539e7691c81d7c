"""Converters from public human-rated image-editing benchmarks into epaiqa dataset roots (``epaiqa import``).

One module per format (:mod:`~epaiqa.converters.ie_bench`, :mod:`~epaiqa.converters.editreward_bench`,
:mod:`~epaiqa.converters.editscore`, :mod:`~epaiqa.converters.genai_bench`, :mod:`~epaiqa.converters.imagenhub`,
:mod:`~epaiqa.converters.aurora`), each naming the repository, file and commit it follows; the registry is
:mod:`~epaiqa.converters.registry` (``FORMATS``, ``get_converter``), the shared machinery
:mod:`~epaiqa.converters.base`. Nothing heavy is imported until a format is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from epaiqa.converters.base import Summary


def import_benchmark(fmt: str, src: str | Path, out: str | Path, link: bool = False, force: bool = False) -> Summary:
    """Convert the benchmark at ``src`` (format ``fmt``) into a new dataset root ``out``.

    Raises :class:`~epaiqa.converters.base.ConversionError` (one line, ``FILE:LINE: field: message``) on bad input.
    """
    from epaiqa.converters.base import convert
    from epaiqa.converters.registry import get_converter

    converter = get_converter(fmt)
    return convert(converter.name, converter.version, converter.read, src, out, link=link, force=force)


__all__ = ["import_benchmark"]
