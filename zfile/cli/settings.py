"""The effective configuration: flags > ``ZFILE_*`` environment > TOML file > defaults.

The config file (TOML, read with the stdlib's :mod:`tomllib`) has two tables:

- ``[server]``: any field of :class:`zfile.config.ServerConfig`, for
  ``zfile serve``; environment variable ``ZFILE_<FIELD>``, e.g.
  ``ZFILE_MAX_TRANSFERS``;
- ``[client]``: the fields of :class:`ClientSettings`, for ``send``, ``get``
  and ``ls``; environment variables ``ZFILE_SERVER``, ``ZFILE_SERVER_KEY``,
  ``ZFILE_CLIENT_KEY``.

The file is ``--config PATH``, else ``$ZFILE_CONFIG``, else
:data:`DEFAULT_CONFIG_PATH`; only the default may be missing.  A key the
table does not know, a value of the wrong type or out of range, or an
environment value that does not parse raises :class:`~zfile.errors.ConfigError`
naming the key or variable.  ``systemd/zfile.toml.example`` documents every key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zfile.errors import ConfigError, EndpointError
from zfile.http.access import parse_address
from zfile.server.config import ServerConfig
from zfile.transport.endpoint import DEFAULT_ENDPOINT, parse_endpoint

DEFAULT_CONFIG_PATH = "/etc/zfile/zfile.toml"
CONFIG_ENV = "ZFILE_CONFIG"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """What ``send``, ``get`` and ``ls`` need to reach a daemon.

    ``server`` is the daemon's endpoint; ``server_key`` a file holding the
    daemon's CURVE public key; ``client_key`` the client's ``.key_secret``
    file.  Both keys or neither: with them the connection uses CurveZMQ.
    """

    server: str = DEFAULT_ENDPOINT
    server_key: str | None = None
    client_key: str | None = None


_CLIENT_ENV = {"server": "ZFILE_SERVER", "server_key": "ZFILE_SERVER_KEY", "client_key": "ZFILE_CLIENT_KEY"}
# Flags not spelled --<key> (for error messages).
_FLAG_NAMES = {"server": "--to/--from"}

# Lower bounds of numeric server settings (the CLI's flags use the same).
_MINIMUM: dict[str, float] = {
    "chunk_size": 1,
    "window": 1,
    "max_file_size": 0,
    "max_transfers": 1,
    "max_transfers_per_peer": 1,
    "min_rate": 0,
    "idle_timeout": 0.1,
    "grace_period": 0,
    "max_name_bytes": 1,
    "partial_ttl": 0,
    "max_partials": 0,
    "max_partial_bytes": 0,
    "max_partials_per_peer": 0,
    "max_partial_bytes_per_peer": 0,
}


def _field_types(cls: type) -> dict[str, tuple[type, bool]]:
    """Field name -> (scalar type, whether it may be None) for str/int/float/bool fields."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[type, bool]] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        optional = False
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            optional = len(args) < len(typing.get_args(hint))
            hint = args[0] if len(args) == 1 else object
        if hint in (str, int, float, bool):
            out[f.name] = (hint, optional)
    return out


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _from_toml(where: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{where} must be {_TYPE_NAMES[kind]}, not {type(value).__name__} {value!r}")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _from_env(where: str, text: str, kind: type, optional: bool) -> Any:
    if optional and text == "":
        return None
    try:
        if kind is bool:
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
            raise ValueError
        return kind(text)
    except ValueError:
        raise ConfigError(f"{where} must be {_TYPE_NAMES[kind]}, got {text!r}") from None


def _load_toml(f: Any) -> dict[str, Any]:
    # Imported only when a config file exists: most commands have none, and
    # every command's start-up would pay for the import.
    import tomllib

    return tomllib.load(f)


def read_file(path: str | os.PathLike[str] | None, env: Mapping[str, str] = os.environ) -> tuple[dict, str | None]:
    """Parse the config file; return (its tables, the path read or None).

    ``path`` None means ``$ZFILE_CONFIG``, else :data:`DEFAULT_CONFIG_PATH`,
    which may be missing (then the result is empty).  A path given explicitly
    must exist.  Raises :class:`ConfigError` for an unreadable file, bad TOML,
    or a top-level key other than ``server`` and ``client``.
    """
    explicit = path is not None or bool(env.get(CONFIG_ENV))
    chosen = str(path) if path is not None else env.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH
    try:
        with open(chosen, "rb") as f:
            data = _load_toml(f)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {chosen} does not exist") from None
        return {}, None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {chosen}: {exc.strerror}") from None
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise ConfigError(f"config file {chosen} is not valid TOML: {exc}") from None
    for key, value in data.items():
        if key not in ("server", "client"):
            raise ConfigError(f"config file {chosen}: unknown key {key!r} (expected tables [server] and [client])")
        if not isinstance(value, dict):
            raise ConfigError(f"config file {chosen}: {key} must be a table ([{key}])")
    return data, chosen


def _merge(
    cls: type,
    table: str,
    file_data: dict,
    file_path: str | None,
    env: Mapping[str, str],
    env_names: Mapping[str, str],
    flags: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, str]]:
    """The merged values, and for each key where its value came from (for errors)."""
    fields = _field_types(cls)
    values: dict[str, Any] = {}
    source = {key: key for key in fields}
    for key, raw in file_data.get(table, {}).items():
        where = f"config file {file_path}: [{table}] {key}"
        if key not in fields:
            raise ConfigError(f"{where}: unknown key (known keys: {', '.join(sorted(fields))})")
        values[key] = _from_toml(where, raw, fields[key][0])
        source[key] = where
    for key, (kind, optional) in fields.items():
        var = env_names[key]
        if var in env:
            source[key] = f"environment variable {var} ({key})"
            values[key] = _from_env(source[key], env[var], kind, optional)
    for key, value in flags.items():
        if value is not None:
            values[key] = value
            source[key] = _FLAG_NAMES.get(key, f"--{key.replace('_', '-')}")
    return values, source


def server_config(
    flags: Mapping[str, Any] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] = os.environ,
) -> ServerConfig:
    """The daemon's effective :class:`ServerConfig`.

    ``flags`` maps field names to values given on the command line (None:
    not given).  Raises :class:`ConfigError` naming the key or variable at
    fault.
    """
    data, path = read_file(config_path, env)
    names = {name: f"ZFILE_{name.upper()}" for name in _field_types(ServerConfig)}
    values, source = _merge(ServerConfig, "server", data, path, env, names, flags or {})
    config = ServerConfig(**values)
    return _check_server(config, source)


def _check_server(config: ServerConfig, source: Mapping[str, str]) -> ServerConfig:
    changes: dict[str, Any] = {}
    try:
        changes["bind"] = parse_endpoint(config.bind)
    except EndpointError as exc:
        raise ConfigError(f"{source['bind']}: {exc}") from None
    for key, low in _MINIMUM.items():
        value = getattr(config, key, None)
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{source[key]} must be a finite number, not {value}")
        if value < low:
            raise ConfigError(f"{source[key]} must be at least {low:g}, not {value:g}")
    level = config.log_level.upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{source['log_level']} must be one of {', '.join(LOG_LEVELS)}, not {config.log_level!r}")
    changes["log_level"] = level
    if config.log_format not in LOG_FORMATS:
        raise ConfigError(f"{source['log_format']} must be one of {', '.join(LOG_FORMATS)}, not {config.log_format!r}")
    if config.store is not None and config.store.startswith("s3://") and not config.store[5:].split("/")[0]:
        raise ConfigError(f"{source['store']} names no bucket: expected s3://BUCKET/PREFIX/, not {config.store!r}")
    if config.s3_endpoint is not None and not config.s3_endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"{source['s3_endpoint']} must be an http:// or https:// URL, not {config.s3_endpoint!r}")
    if (config.secret_key is None) != (config.authorized_keys is None):
        raise ConfigError("secret_key and authorized_keys go together: set both to turn CURVE on, or neither")
    if config.http is not None:
        try:
            parse_address(config.http)
        except ConfigError as exc:
            raise ConfigError(f"{source['http']}: {exc}") from None
    else:
        for key in ("http_tokens", "http_cert", "http_key"):
            if getattr(config, key) is not None:
                raise ConfigError(f"{source[key]} is set but HTTP is off: set http too, or drop it")
    if (config.http_cert is None) != (config.http_key is None):
        raise ConfigError("http_cert and http_key go together: set both to serve HTTPS, or neither")
    return dataclasses.replace(config, **changes)


def client_settings(
    flags: Mapping[str, Any] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] = os.environ,
) -> ClientSettings:
    """The client's effective :class:`ClientSettings` (same precedence and
    errors as :func:`server_config`)."""
    data, path = read_file(config_path, env)
    values, source = _merge(ClientSettings, "client", data, path, env, _CLIENT_ENV, flags or {})
    settings = ClientSettings(**values)
    try:
        server = parse_endpoint(settings.server)
    except EndpointError as exc:
        raise ConfigError(f"{source['server']}: {exc}") from None
    if (settings.server_key is None) != (settings.client_key is None):
        raise ConfigError(
            "server_key and client_key go together: give the daemon's public key and this client's key pair"
        )
    return dataclasses.replace(settings, server=server)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # A JSON string without ASCII escaping is a TOML basic string, but for
        # DEL, which TOML wants escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    return repr(value)


def dump(table: str, settings: Any) -> str:
    """``settings`` (a config dataclass) as a TOML table that :func:`read_file`
    reads back to the same values; unset (None) keys appear as comments."""
    lines = [f"[{table}]"]
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if value is None:
            lines.append(f"# {f.name} is not set")
        elif isinstance(value, str | int | float | bool):
            lines.append(f"{f.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def resolve_path(path: str | None) -> str | None:
    """``~`` expanded, for key file settings."""
    return None if path is None else str(Path(path).expanduser())


__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "ClientSettings",
    "client_settings",
    "dump",
    "read_file",
    "resolve_path",
    "server_config",
]
