"""Quota pools shared by every worker on one credential, kept in Redis (the workspace's ``quotas_shared``).

An API counts calls per credential, not per process: ten workers on one tenant's token must together stay under its
window. So when the workspace names a store, a pool's sliding window of sent calls and the pause learnt from a 429
or a reset header live there, under a key of the credential (tenant, connection, a hash of the credential's
identity — never a secret — and pool name). Admitting a call is one Lua script (trim, count, admit or say how long
to wait), so two workers can never both take the last slot; a pause is the latest of what any worker learnt.

Time is the Redis server's own clock (one clock for every machine, no skew between workers) unless a clock is
injected (tests). A store that cannot be reached is an error naming the setting: calls are never made with
unshared limits instead, which would overrun the real quota as soon as a second worker runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from ml_connector.extras import import_from_extra
from ml_connector.http.errors import FatalError
from ml_connector.http.redact import REDACTOR

SETTING = "quotas_shared"  # the workspace key
Clock = Callable[[], float]

# Both scripts: ``now`` from ARGV[1], or the Redis server's clock when it is '' (one clock for every machine).
_NOW = """local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
"""

# KEYS: the window's sorted set (member per call, score = when), the pause key. ARGV: now ('' = the server's
# clock), window seconds (0 = none), calls per window (0 = no count), a unique member. Returns {1, now} when the
# call is admitted (and counted), {0, seconds to wait} when it is not (nothing is counted then).
_ADMIT = _NOW + """
local window = tonumber(ARGV[2])
local calls = tonumber(ARGV[3])
local wait = 0
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
if blocked > now then wait = blocked - now end
if window > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if calls > 0 then
    local n = redis.call('ZCARD', KEYS[1])
    if n >= calls then
      local edge = redis.call('ZRANGE', KEYS[1], n - calls, n - calls, 'WITHSCORES')
      local free = tonumber(edge[2]) + window - now
      if free > wait then wait = free end
    end
  end
end
if wait > 0 then return {0, string.format('%.6f', wait)} end
if window > 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
end
return {1, string.format('%.6f', now)}
"""

# KEYS: the pause key. ARGV: now ('' = the server's clock), seconds. The pause ends at the latest moment any worker
# learnt; it expires by itself once over.
_BLOCK = _NOW + """
local seconds = tonumber(ARGV[2])
local ends = now + seconds
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if ends > current then
  redis.call('SET', KEYS[1], string.format('%.6f', ends), 'PX', math.ceil(seconds * 1000) + 1000)
  return string.format('%.6f', ends)
end
return string.format('%.6f', current)
"""

_SHA = {script: hashlib.sha1(script.encode()).hexdigest() for script in (_ADMIT, _BLOCK)}


class SharedQuotaUnavailable(FatalError):
    """The shared quota store is misconfigured or cannot be reached: no call is made without it."""


@dataclass(frozen=True)
class SharedQuotaSettings:
    """The workspace's ``quotas_shared``: a Redis URL, or ``{redis, password, tenant}``."""

    url: str
    password: str | None = None  # a secret reference (env:NAME or store:NAME), never the password itself
    tenant: str = ""  # isolates this tenant's pools from another's with the same connection names

    @classmethod
    def of(cls, value: Any) -> SharedQuotaSettings | None:
        """The settings from the workspace's value (None: pools stay in each process, the embedded default)."""
        if value is None:
            return None
        if isinstance(value, str):
            settings = cls(value)
        else:
            settings = cls(str(value["redis"]), value.get("password"), str(value.get("tenant") or ""))
        if urlsplit(settings.url).password:
            raise SharedQuotaUnavailable(f"{SETTING}: put the password in {SETTING}.password as env:NAME or "
                                         "store:NAME, not in the URL (a workspace holds no secret in clear)")
        return settings


def credential_identity(connector: str, auth: str, base_url: str, secret_refs: Mapping[str, str]) -> str:
    """Which account a connection calls as, for the shared key: the connector, auth method, base URL and the secret
    *references* (the same references on every worker of a deployment). No secret value is read: a rotated token is
    still the same account, and nothing secret reaches the store."""
    text = json.dumps([connector, auth, base_url, sorted(secret_refs.items())], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _readable(part: str) -> str:
    return part.replace("{", "(").replace("}", ")").replace(":", "_")


class SharedQuotas:
    """One Redis holding the shared pools of a tenant; one client per event loop (an asyncio client is bound to the
    loop that made it)."""

    def __init__(self, url: str, *, password: str | None = None, tenant: str = "", prefix: str = "mlc",
                 clock: Clock | None = None) -> None:
        self.url = url
        self.password = password
        self.tenant = tenant
        self.prefix = prefix
        self.clock = clock  # None: the server's clock
        self._clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    def pool(self, connection: str, identity: str, pool: str) -> SharedPool:
        """The shared state of one pool of one credential."""
        digest = hashlib.sha256(json.dumps([self.tenant, connection, identity, pool]).encode()).hexdigest()[:24]
        readable = ":".join(_readable(p) for p in (self.tenant or "-", connection, pool))
        return SharedPool(self, f"{self.prefix}:quota:{readable}:{{{digest}}}")  # one hash slot per pool

    def fail(self, exc: BaseException) -> SharedQuotaUnavailable:
        """The error for a store that did not answer: names the setting and the URL (never the password)."""
        reason = str(exc) or type(exc).__name__
        if self.password:
            reason = reason.replace(self.password, "***")
        return SharedQuotaUnavailable(f"{SETTING}: cannot reach the shared quota store at {self.url} ({reason}); "
                                      "no call is made without it (unshared limits would overrun the API's quota)")

    def client(self) -> Any:
        loop = asyncio.get_running_loop()
        found = self._clients.get(loop)
        if found is None:
            module = import_from_extra("redis.asyncio", "cluster")
            found = module.Redis.from_url(self.url, password=self.password, socket_connect_timeout=5,
                                          socket_timeout=5, decode_responses=True)
            self._clients[loop] = found
        return found

    async def aclose(self) -> None:
        """Close this event loop's connections (a later call in the loop opens new ones)."""
        found = self._clients.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found.aclose()

    async def run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script (cached on the server by its hash); any failure of the store is SharedQuotaUnavailable."""
        errors = import_from_extra("redis.exceptions", "cluster")
        now = "" if self.clock is None else repr(self.clock())
        client = self.client()
        try:
            try:  # by hash: a script is sent once per server, not with every call
                return await client.evalsha(_SHA[script], len(keys), *keys, now, *args)
            except errors.NoScriptError:
                return await client.eval(script, len(keys), *keys, now, *args)
        except (errors.RedisError, OSError) as exc:
            raise self.fail(exc) from exc

    def check(self) -> None:
        """Say now, before any flow starts, when the store cannot be reached (a blocking PING)."""
        module = import_from_extra("redis", "cluster")
        try:
            with module.Redis.from_url(self.url, password=self.password, socket_connect_timeout=5,
                                       socket_timeout=5) as connection:
                connection.ping()
        except (module.exceptions.RedisError, OSError) as exc:
            raise self.fail(exc) from exc


class SharedPool:
    """One pool's window and pause in the store, as :class:`~ml_connector.http.quotas.Quota` consults them."""

    def __init__(self, store: SharedQuotas, key: str) -> None:
        self.store = store
        self.key = key
        self.last_admitted: float | None = None  # the store's time of the last call this object admitted

    async def admit(self, window: float | None, calls: int | None) -> float:
        """0 when a call may go now (and it is counted), else the seconds to wait before asking again."""
        admitted, value = await self.store.run(_ADMIT, [f"{self.key}:sent", f"{self.key}:blocked"],
                                               [repr(float(window or 0)), str(int(calls or 0)), uuid.uuid4().hex])
        if int(admitted):
            self.last_admitted = float(value)
            return 0.0
        return max(float(value), 1e-6)

    async def block(self, seconds: float) -> None:
        """No worker starts a call of this pool for ``seconds`` (or longer, when another worker learnt longer)."""
        await self.store.run(_BLOCK, [f"{self.key}:blocked"], [repr(float(seconds))])


_STORES: dict[tuple[str, str | None, str], SharedQuotas] = {}


def shared_quotas_for(workspace: Any, vault: Any) -> SharedQuotas | None:
    """The store a workspace names (one per process and settings, so its connections are reused), or None.

    ``workspace``: the loaded workspace spec (its ``data``) or None; ``vault``: the credential store, for a
    ``store:NAME`` password."""
    data = getattr(workspace, "data", None) or {}
    settings = SharedQuotaSettings.of(data.get(SETTING))
    if settings is None:
        return None
    state = data.get("state")
    if not settings.tenant and isinstance(state, Mapping) and state.get("schema"):
        settings = replace(settings, tenant=str(state["schema"]))  # a tenant's PostgreSQL schema names it
    password = _secret(settings.password, vault) if settings.password else None
    key = (settings.url, password, settings.tenant)
    if key not in _STORES:
        _STORES[key] = SharedQuotas(settings.url, password=password, tenant=settings.tenant)
    return _STORES[key]


def _secret(ref: str, vault: Any) -> str:
    scheme, _, name = ref.partition(":")
    if scheme == "env":
        value = os.environ.get(name)
    elif scheme == "store":
        value = vault.get(name) if vault is not None else None
    else:
        raise SharedQuotaUnavailable(f"{SETTING}.password must be env:NAME or store:NAME")
    if not value:
        raise SharedQuotaUnavailable(f"{SETTING}.password: {ref} is not set")
    REDACTOR.add(value)
    return value


def check_shared_quotas(workspace: Any, vault: Any) -> None:
    """Before a run starts: a store the workspace names must answer (one clear line instead of a failed flow)."""
    shared = shared_quotas_for(workspace, vault)
    if shared is not None:
        shared.check()
