"""The embedded demo PAI set: synthetic edits of natural photos shipped inside installed packages."""

from epaiqa.data.demo.generate import (
    DEMO_DEFAULTS,
    DEMO_VERSION,
    demo_root,
    ensure_demo_set,
    generate_demo_set,
    root_or_demo,
)

__all__ = ["DEMO_DEFAULTS", "DEMO_VERSION", "demo_root", "ensure_demo_set", "generate_demo_set", "root_or_demo"]
