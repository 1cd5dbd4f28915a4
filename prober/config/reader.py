"""Typed access to a TOML table that names the file and key in every error."""

from __future__ import annotations

import enum
import math
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, Literal, cast, overload


class _Required(enum.Enum):
    """The marker for "no default given": the key must be present."""

    REQUIRED = enum.auto()


_REQUIRED: Final = _Required.REQUIRED


class ConfigError(Exception):
    """A problem in the configuration; the message names the file and the key."""

    def __init__(self, file: str, key: str, message: str, line: int | None = None) -> None:
        self.file = file
        self.key = key
        self.line = line
        where = f"{file}:{line}" if line else file
        text = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        super().__init__(text)


class Secret:
    """A resolved secret. Deliberately not a dataclass: generic walkers (asdict, our config
    printer, repr of a containing dataclass) must never reach the value."""

    __slots__ = ("_value", "source")

    def __init__(self, source: str, value: str) -> None:
        self.source = source  # "env:NAME", "file:/path", "credential:NAME"
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.source}, ****)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


# Larger than any sane value: a bound on what a mistaken path (a log, a disk image) costs.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_SECRET_BYTES = 64 * 1024
# Characters that end or cut a protocol line: in a user, folder, host or header they would
# smuggle a second SMTP/IMAP command or header into the conversation.
_LINE_BREAKERS = ("\r", "\n", "\0")

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


class FileProblem(Exception):
    """Why a file cannot be read as configuration or a secret; the caller names the key."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.reason = reason  # without the path, for messages that name the file already
        super().__init__(f"{path}: {reason}")


def read_regular_file(path: str | Path, limit: int) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file of at most `limit` bytes, and its status.

    Opened without blocking, so a FIFO (or a device) is refused instead of hanging the
    reader until someone writes to it; the type is checked on the open descriptor.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise FileProblem(path, f"cannot read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a file")
            raise FileProblem(path, f"is {kind}, not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            try:
                chunk = os.read(fd, min(65536, limit + 1 - size))
            except OSError as exc:
                raise FileProblem(path, f"cannot read: {exc.strerror}") from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise FileProblem(path, f"is larger than {limit} bytes")
        return b"".join(chunks), st
    finally:
        os.close(fd)


class Section:
    """One TOML table plus where it sits, so errors can say `file: mailbox[1].smtp.port: ...`."""

    def __init__(self, data: dict[str, Any], file: str, path: str = "") -> None:
        if not isinstance(data, dict):
            raise ConfigError(file, path, f"must be a table, got {type(data).__name__}")
        self.data = data
        self.file = file
        self.path = path
        self._used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), message)

    def has(self, name: str) -> bool:
        return name in self.data

    def _get(self, name: str, default: object, kinds: tuple[type, ...], kind_name: str) -> Any:
        self._used.add(name)
        if name not in self.data:
            if default is _REQUIRED:
                raise self.error(name, "is required")
            return default
        value = self.data[name]
        # bool is an int in Python; TOML keeps them apart and so do we.
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(name, f"must be {kind_name}, got a boolean")
        if not isinstance(value, kinds):
            raise self.error(name, f"must be {kind_name}, got {type(value).__name__} {value!r}")
        return value

    # Each getter: required when no default is given; `default=None` makes it optional and
    # the result `... | None`; any other default is returned as is when the key is absent.

    @overload
    def text(self, name: str, default: str | _Required = _REQUIRED) -> str: ...
    @overload
    def text(self, name: str, default: None) -> str | None: ...

    def text(self, name: str, default: str | _Required | None = _REQUIRED) -> str | None:
        value = self._get(name, default, (str,), "a string")
        if value is not default:
            if value == "":
                raise self.error(name, "must not be empty")
            self.one_line(name, value)
        return cast("str | None", value)

    def one_line(self, name: str, value: str) -> None:
        """Refuse CR, LF and NUL: no configured string belongs on more than one line."""
        if any(c in value for c in _LINE_BREAKERS):
            raise self.error(name, f"must be one line, without CR, LF or NUL: {value!r}")

    @overload
    def integer(self, name: str, default: int | _Required = _REQUIRED,
                minimum: int | None = None, maximum: int | None = None) -> int: ...
    @overload
    def integer(self, name: str, default: None, minimum: int | None = None,
                maximum: int | None = None) -> int | None: ...

    def integer(self, name: str, default: int | _Required | None = _REQUIRED,
                minimum: int | None = None, maximum: int | None = None) -> int | None:
        value = self._get(name, default, (int,), "an integer")
        if value is not None and value is not default:
            self._check_range(name, value, minimum, maximum)
        return cast("int | None", value)

    @overload
    def number(self, name: str, default: float | _Required = _REQUIRED,
               minimum: float | None = None, maximum: float | None = None) -> float: ...
    @overload
    def number(self, name: str, default: None, minimum: float | None = None,
               maximum: float | None = None) -> float | None: ...

    def number(self, name: str, default: float | _Required | None = _REQUIRED,
               minimum: float | None = None, maximum: float | None = None) -> float | None:
        value = self._get(name, default, (int, float), "a number")
        if value is None or value is default:
            return cast("float | None", value)
        self._check_range(name, value, minimum, maximum)
        return float(value)

    def _check_range(self, name: str, value: float, minimum: float | None,
                     maximum: float | None) -> None:
        """The one place numbers are bounded: finite, and within the key's documented range
        (nan compares false with everything, so it must be refused before the bounds)."""
        if not math.isfinite(value):
            raise self.error(name, f"must be a finite number, got {value}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be <= {maximum}, got {value}")

    @overload
    def flag(self, name: str, default: bool | _Required = _REQUIRED) -> bool: ...
    @overload
    def flag(self, name: str, default: None) -> bool | None: ...

    def flag(self, name: str, default: bool | _Required | None = _REQUIRED) -> bool | None:
        return cast("bool | None", self._get(name, default, (bool,), "true or false"))

    @overload
    def choice(self, name: str, choices: Iterable[str],
               default: str | _Required = _REQUIRED) -> str: ...
    @overload
    def choice(self, name: str, choices: Iterable[str], default: None) -> str | None: ...

    def choice(self, name: str, choices: Iterable[str],
               default: str | _Required | None = _REQUIRED) -> str | None:
        options = list(choices)
        value = self.text(name, default)
        if value is not default and value not in options:
            raise self.error(name, f"must be one of {', '.join(options)}; got {value!r}")
        return value

    @overload
    def text_list(self, name: str, default: list[str] | _Required = _REQUIRED) -> list[str]: ...
    @overload
    def text_list(self, name: str, default: None) -> list[str] | None: ...

    def text_list(self, name: str,
                  default: list[str] | _Required | None = _REQUIRED) -> list[str] | None:
        value = self._get(name, default, (list,), "a list of strings")
        if value is default:
            return cast("list[str] | None", value)
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise self.error(f"{name}[{i}]", f"must be a non-empty string, got {item!r}")
            self.one_line(f"{name}[{i}]", item)
        return list(value)

    def existing_file(self, name: str) -> str | None:
        """A path to a file that must exist; relative paths are from the config file's
        folder, so a config and its CA file or secrets can move together."""
        value = self.text(name, None)
        if value is None:
            return None
        path = Path(value)
        if not path.is_absolute():
            path = Path(self.file).resolve().parent / path
        if not path.exists():
            raise self.error(name, f"no such file: {path}")
        if not path.is_file():
            raise self.error(name, f"{path} is not a regular file")
        return str(path)

    def text_map(self, name: str) -> dict[str, str]:
        """A table of string values, e.g. extra headers; {} when absent."""
        self._used.add(name)
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise self.error(name, "must be a table of strings")
        for key, item in value.items():
            if not isinstance(item, str):
                raise self.error(f"{name}.{key}", f"must be a string, got {item!r}")
            self.one_line(f"{name}.{key}", item)
        return dict(value)

    def table(self, name: str, required: bool = False) -> Section | None:
        self._used.add(name)
        if name not in self.data:
            if required:
                raise self.error(name, "is required (a table)")
            return None
        return Section(self.data[name], self.file, self.key(name))

    def tables(self, name: str) -> list[Section]:
        """An array of tables, `[[name]]`."""
        self._used.add(name)
        value = self.data.get(name, [])
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            raise self.error(name, "must be an array of tables ([[" + name + "]])")
        return [Section(item, self.file, f"{self.key(name)}[{i}]") for i, item in enumerate(value)]

    @overload
    def secret(self, stem: str, required: Literal[True] = True) -> Secret: ...
    @overload
    def secret(self, stem: str, required: bool) -> Secret | None: ...

    def secret(self, stem: str, required: bool = True) -> Secret | None:
        """A secret named by `<stem>_env`, `<stem>_file` or `<stem>_credential`, never inline.

        An inline `<stem>` key is refused: a password in a config file ends up in backups,
        in version control and in `ps`-visible editors.
        """
        self._used.add(stem)
        if stem in self.data:
            raise self.error(stem, f"secrets are not accepted inline; use {stem}_env, "
                             f"{stem}_file or {stem}_credential")
        given = [s for s in ("env", "file", "credential") if f"{stem}_{s}" in self.data]
        for source in ("env", "file", "credential"):
            self._used.add(f"{stem}_{source}")
        shared_key = f"{stem}_file_shared"
        shared = self.flag(shared_key, False)
        if self.has(shared_key) and given != ["file"]:
            raise self.error(shared_key, f"applies only with {stem}_file")
        if not given:
            if required:
                raise self.error(f"{stem}_env", f"one of {stem}_env, {stem}_file, "
                                 f"{stem}_credential is required")
            return None
        if len(given) > 1:
            raise self.error(f"{stem}_{given[1]}", f"give only one of {stem}_env, {stem}_file, "
                             f"{stem}_credential")
        source = given[0]
        key = f"{stem}_{source}"
        ref = self.text(key)
        if source == "env":
            value = os.environ.get(ref)
            if value is None:
                raise self.error(key, f"environment variable {ref} is not set")
            self._check_secret(key, value, f"environment variable {ref}")
            return Secret(f"env:{ref}", value)
        if source == "file":
            path = Path(ref)
            if not path.is_absolute():
                path = Path(self.file).resolve().parent / path
            value = self.read_secret_file(key, path, shared=shared, shared_key=shared_key)
            return Secret(f"file:{path}", value)
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not creds:
            raise self.error(key, "CREDENTIALS_DIRECTORY is not set (systemd LoadCredential= "
                             "provides it)")
        # systemd keeps $CREDENTIALS_DIRECTORY private to the unit: no mode check there.
        value = self.read_secret_file(key, Path(creds) / ref, shared=True)
        return Secret(f"credential:{ref}", value)

    def read_secret_file(self, key: str, path: Path, shared: bool = False,
                         shared_key: str = "") -> str:
        """The one check for a file holding a secret: a regular file (a FIFO must not hang
        the load), readable, at most 64 KiB of UTF-8, and, unless `shared`, readable by its
        owner only. Trailing line breaks are dropped; any other is refused."""
        try:
            raw, st = read_regular_file(path, MAX_SECRET_BYTES)
        except FileProblem as exc:
            raise self.error(key, str(exc)) from None
        if not shared and st.st_mode & 0o044:
            raise self.error(key, f"{path} is readable by group or others (mode "
                             f"{stat.S_IMODE(st.st_mode):04o}); chmod 0600 it, or set "
                             f"{shared_key or 'the _shared option'} = true if that is intended")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(key, f"{path} is not UTF-8 text ({exc.reason} at byte "
                             f"{exc.start})") from None
        value = text.rstrip("\r\n")
        self._check_secret(key, value, str(path))
        return value

    def _check_secret(self, key: str, value: str, where: str) -> None:
        # never echo the value: the error names only where it came from
        if value == "":
            raise self.error(key, f"{where} is empty")
        if any(c in value for c in _LINE_BREAKERS):
            raise self.error(key, f"{where} holds a CR, LF or NUL inside the secret; it "
                             "would end the login command early")

    def check_unknown(self) -> None:
        """Typos such as `prot = 587` must not be silently ignored."""
        for name in self.data:
            if name not in self._used:
                raise self.error(name, "unknown key")
