"""Declared settings: each component keeps the settings it reads in its own config dataclass, beside its
code (as nanoGPT's `GPTConfig` sits beside `GPT`). A field made with `setting(...)` is a trial setting,
with its allowed values; `declared(Config)` lists them. `harness.trial` builds the flat `TrialConfig`, its
command line, its checks and its canonical form by looping over these declarations, so adding a setting
is one edit beside the code that reads it.

    @dataclass
    class DistillSettings:
        fusion: str = setting("gate", choices=("gate", "concat", "sum"), needs="modalities",
                              help="how modality tables are fused with the ID embedding")
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

METADATA_KEY = "kdsr_setting"
AUTO = "auto"


class SettingError(ValueError):
    """A value a setting does not allow; the message names the setting, the value and the choices."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str = ""
    choices: tuple = ()  # allowed values (of each element, for a list setting)
    pattern: str = ""  # a full-match regular expression for string values (instead of choices)
    interval: str = ""  # allowed numeric range, e.g. "[1, inf)", "(0, 1]"
    item: type | None = None  # element type of a list setting (inferred from a non-empty default)
    per_modality: bool = False  # a list of one value (every modality) or one value per modality
    needs: str = ""  # a MethodSpec flag: the setting matters only to methods that set it
    when: tuple = ()  # (other setting, allowed values or an interval such as "[1, inf)"): the setting matters
    # only when the other has one of them
    execution: bool = False  # where or how fast a trial runs, not what it computes: never part of a result key
    before: Any = None  # for a setting added with a new default: the value configs written before it implied
    auto: bool = False  # also takes AUTO (its default then): the harness decides the value from the data
    group: str = ""  # the component that declares it (filled by `declared`)

    @property
    def kind(self) -> type:
        """The type of a value (for an `auto` setting: of a decided value, e.g. bool)."""
        if self.auto:
            return self.item
        return list if isinstance(self.default, list) else type(self.default)

    @property
    def element(self) -> type:
        if self.kind is not list:
            return self.kind
        return self.item or (type(self.default[0]) if self.default else str)

    @property
    def implied(self):
        """The value a stored config without this setting had (its old behaviour)."""
        return self.default if self.before is None else self.before

    def applies(self, other_value) -> bool:
        """Whether the setting matters when its `when` setting has `other_value` (True without `when`)."""
        if not self.when:
            return True
        allowed = self.when[1]
        return _inside(allowed, other_value) if isinstance(allowed, str) else other_value in allowed

    def fresh_default(self):
        return list(self.default) if isinstance(self.default, list) else self.default

    def parse(self, value):
        """A value from a grid file or a search -> this setting's type (an int where a float is expected
        is converted, a scalar for a list setting becomes a one-element list), then checked."""
        if self.auto and value == AUTO:
            return AUTO
        if self.kind is list:
            values = value if isinstance(value, (list, tuple)) else [value]
            parsed = [_coerce(self, self.element, v) for v in values]
        else:
            parsed = _coerce(self, self.kind, value)
        self.check(parsed)
        return parsed

    def check(self, value) -> None:
        """Raise SettingError unless `value` (already of this setting's type) is allowed."""
        if self.auto and value == AUTO:
            return
        if self.kind is list:
            if not isinstance(value, (list, tuple)):
                raise SettingError(f"{self.name}: {value!r} is not a list of {self.element.__name__}")
            for v in value:
                self._check_one(v, self.element)
        else:
            self._check_one(value, self.kind)

    def _check_one(self, value, kind: type) -> None:
        _coerce(self, kind, value)
        if self.choices and value not in self.choices:
            raise SettingError(f"{self.name}: {value!r} is not allowed; choose from "
                               f"{', '.join(map(str, self.choices))}")
        if self.pattern and not re.fullmatch(self.pattern, str(value)):
            raise SettingError(f"{self.name}: {value!r} is not allowed; expected {self.help or self.pattern}")
        if self.interval and not _inside(self.interval, value):
            raise SettingError(f"{self.name}: {value!r} is outside the allowed range {self.interval}")


def setting(default, **options) -> dataclasses.Field:
    """A dataclass field that is also a declared trial setting (see Setting for the options)."""
    declaration = Setting(name="", default=default, **options)
    if declaration.auto and (declaration.item is None or default != AUTO):
        raise TypeError("an auto setting has the default AUTO and names the type of its decided values (item=)")
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={METADATA_KEY: declaration})
    return dataclasses.field(default=default, metadata={METADATA_KEY: declaration})


def declared(config_cls, group: str = "") -> list[Setting]:
    """The settings a component's config dataclass declares, in field order."""
    out = []
    for f in dataclasses.fields(config_cls):
        declaration = f.metadata.get(METADATA_KEY)
        if declaration is not None:
            out.append(dataclasses.replace(declaration, name=f.name, group=group or config_cls.__name__))
    return out


def pick(config_cls, values: dict, **extra):
    """An instance of `config_cls` from the declared settings found in `values` (plus `extra` fields)."""
    return config_cls(**{s.name: values[s.name] for s in declared(config_cls) if s.name in values}, **extra)


def _coerce(declaration: Setting, kind: type, value):
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, kind):
        return value
    raise SettingError(f"{declaration.name}: {value!r} is not a {kind.__name__}")


_INTERVAL = re.compile(r"\s*([\[(])\s*([^,]+?)\s*,\s*([^,]+?)\s*([\])])\s*")


def _inside(interval: str, value) -> bool:
    match = _INTERVAL.fullmatch(interval)
    if match is None:
        raise ValueError(f"malformed interval {interval!r}: write e.g. '[1, inf)' or '(0, 1]'")
    left, lo, hi, right = match.groups()
    lo, hi = float(lo), float(hi)
    if isinstance(value, float) and math.isnan(value):
        return False
    above = value >= lo if left == "[" else value > lo
    below = value <= hi if right == "]" else value < hi
    return above and below
