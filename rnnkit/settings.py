"""Settings as dataclasses: each field holds its default, its help text and its choices, in one place.

    @dataclass
    class LMModel:
        cell: str = setting("lstm", "the recurrent cell", choices=CELLS)
        layers: int = setting(2, "stacked recurrent layers")

From these fields and nothing else: the command line builds one option per field (rnnkit/cli.py:
add_settings_options), a config file (`--config run.json`) names fields, a preset (rnnkit/tasks/presets.py)
gives fields values, and the task functions take the dataclasses. A field's metadata:

    help        what it does (--help shows it, with the default); every field has one
    choices     the allowed values (checked on the command line, in config files and presets)
    metavar     the placeholder in --help (FILE)
    flags       option strings, when not the generated --kebab-case (--no-kebab-case for a True bool)
    exclusive   a group name: at most one field of the group is set, and a value given at a higher layer
                clears the others' values from the layers below (--data in place of a config file's dataset)

A task's settings (`Settings` subclasses, rnnkit/tasks/settings.py) are sections of such dataclasses
(data, model, training) whose field names are unique across the sections, so a flat mapping names any
setting. They are resolved in layers, each over the one before: the field defaults < a preset < a config
file < explicit values (command-line flags, keyword arguments).
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path

TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def setting(default, help: str, **metadata):
    """A dataclass field with its default and its help text (and choices=, metavar=, flags=, exclusive=)."""
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def redefault(cls, name: str, default):
    """`cls`'s field `name` (help, choices, ...) with another default: a subclass's field for a task whose
    default differs (`epochs: int = redefault(TrainConfig, "epochs", 8)`)."""
    found = {f.name: f for f in dataclasses.fields(cls)}[name]
    return dataclasses.field(default=default, metadata=found.metadata)


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting as the command line and config files see it."""

    name: str
    section: str
    field: dataclasses.Field
    kind: type                  # bool, int, float or str
    optional: bool              # `X | None`: None is a value

    @property
    def default(self):
        return self.field.default

    @property
    def meta(self):
        return self.field.metadata

    def check(self, value, where: str):
        """`value` (from a config file or a preset) if it fits the field's type and choices (an int for a
        float field becomes a float; a string that reads as a number too: YAML reads 1e-3 as a string);
        else a ValueError that says where."""
        if value is None:
            if self.optional:
                return None
            raise ValueError(f"{where}: {self.name} cannot be null; it takes {TYPE_NAMES[self.kind]}")
        if self.kind is float and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool)):
            raise ValueError(f"{where}: {self.name} takes {TYPE_NAMES[self.kind]}"
                             f"{' or null' if self.optional else ''}, got {value!r}")
        choices = self.meta.get("choices")
        if choices is not None and value not in choices:
            raise ValueError(f"{where}: {self.name} must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value


def field_type(annotation) -> tuple[type, bool]:
    """(bool | int | float | str, optional) from a field's annotation: `int`, `int | None`, ..."""
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"a setting has one type (or that type | None), not {annotation}")
        annotation = args[0]
    if annotation not in TYPE_NAMES:
        raise TypeError(f"a setting is a bool, int, float or str (or that | None), not {annotation}")
    return annotation, optional


def options_of(cls, section: str = "") -> dict[str, Option]:
    """The settings of one dataclass (fields made with `setting`) by name, in order."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} has no help text: make it with setting()")
        out[f.name] = Option(f.name, section, f, *field_type(hints[f.name]))
    return out


class Settings:
    """A task's settings: a dataclass whose fields are sections (data, model, training), each a dataclass of
    settings. Subclasses are dataclasses; `from_flat` builds one from a flat mapping of field names."""

    @classmethod
    def sections(cls) -> dict[str, type]:
        """Section name → its dataclass, in order."""
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def options(cls) -> dict[str, Option]:
        """Every setting of every section by name, in order."""
        cached = cls.__dict__.get("_options")
        if cached is not None:
            return cached
        out: dict[str, Option] = {}
        for section, section_cls in cls.sections().items():
            for name, option in options_of(section_cls, section).items():
                if name in out:
                    raise TypeError(f"{cls.__name__}: the setting {name!r} is in two sections")
                out[name] = option
        cls._options = out
        return out

    @classmethod
    def from_flat(cls, values: typing.Mapping):
        """The settings with `values` (field name → value) over the defaults; an unknown name is a TypeError,
        as an unknown keyword argument is."""
        options = cls.options()
        unknown = [name for name in values if name not in options]
        if unknown:
            raise TypeError(f"unknown setting(s) {', '.join(map(repr, unknown))}; the settings are: "
                            f"{', '.join(options)}")
        parts = {section: {} for section in cls.sections()}
        for name, value in values.items():
            parts[options[name].section][name] = value
        return cls(**{section: section_cls(**parts[section]) for section, section_cls in cls.sections().items()})

    def flat(self) -> dict:
        """Every setting by name (a mapping `from_flat` and config files take)."""
        return {name: getattr(getattr(self, option.section), name) for name, option in self.options().items()}

    def to_dict(self) -> dict:
        """{section: {setting: value}}: JSON-ready, and a config file as it is."""
        return {section: dataclasses.asdict(getattr(self, section)) for section in self.sections()}

    def replace(self, **values):
        """A copy with `values` over this one's (a value in an `exclusive` group clears the group's others)."""
        return type(self).from_flat(layered(type(self), self.flat(), values))


def layered(cls: type[Settings], *layers: typing.Mapping) -> dict:
    """The layers' values merged, each over the one before. A setting of an `exclusive` group set in a layer
    removes the group's other settings from the layers below: the highest layer's choice wins whole."""
    options = cls.options()
    out: dict = {}
    for layer in layers:
        for name in layer:
            group = options[name].meta.get("exclusive") if name in options else None
            if group:
                for other, option in options.items():
                    if other != name and option.meta.get("exclusive") == group:
                        out.pop(other, None)
        out.update(layer)
    return out


def flatten(cls: type[Settings], mapping: typing.Mapping, where: str, extra=()) -> dict:
    """A config file's mapping of settings, flat ({"hidden": 64, ...}) or in sections ({"model": {"hidden":
    64}, ...}; a section is a mapping, a setting never is), as a flat dict of checked values. Keys may be
    kebab-case. Unknown keys are a ValueError naming them all; `extra` are keys let through as they are
    (such as "preset")."""
    options, sections = cls.options(), cls.sections()
    out, unknown = {}, []

    def take(key, value, section=None):
        name = str(key).replace("-", "_")
        if section is None and name in extra:
            out[name] = value
        elif name not in options or (section is not None and options[name].section != section):
            unknown.append(f"{section}.{key}" if section else str(key))
        else:
            out[name] = options[name].check(value, where)

    for key, value in mapping.items():
        if key in sections and isinstance(value, typing.Mapping):
            for k, v in value.items():
                take(k, v, key)
        else:
            take(key, value)
    if unknown:
        known = "; ".join(f"{s}: {', '.join(n for n, o in options.items() if o.section == s)}" for s in sections)
        raise ValueError(f"{where}: unknown setting(s) {', '.join(unknown)} (the settings are {known})")
    return out


def read_config(path) -> dict:
    """The mapping in a .json file, or a .yaml/.yml file if PyYAML is installed."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ValueError(f"{path}: a config file is .json, .yaml or .yml")
    text = path.read_text(encoding="utf-8")
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
    else:
        try:
            import yaml
        except ImportError:
            raise ValueError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or write the settings as "
                             f"JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{path} is not valid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of settings (name: value), not a {type(data).__name__}")
    return data
