"""Checks of channels: an entity's `events` and a flow's `trigger` name a channel that exists, lifetimes make sense.

Durations that do not parse are refused by the schema (its pattern); the callback's JMESPaths are compiled here
because the receiver, not the loader, compiles them (they stay plain strings in `CallbackConfig`).
"""

from __future__ import annotations

from typing import Any

from ml_connector.config.channel import parse_duration
from ml_connector.spec.checkutil import as_dict, as_list, did_you_mean, problem, unknown
from ml_connector.spec.expressions import compile_value
from ml_connector.spec.model import Project, Spec
from ml_connector.spec.problems import JsonPath, SpecProblem


def check_connector_channels(spec: Spec) -> list[SpecProblem]:
    """Each entity's `events.channel` is a channel of this connector; renew_before is shorter than the lifetime;
    the callback's JMESPaths compile."""
    data = spec.data
    channels = as_dict(data.get("channels"))
    problems: list[SpecProblem] = []
    for name, entity in as_dict(data.get("entities")).items():
        channel = as_dict(as_dict(entity).get("events")).get("channel")
        if isinstance(channel, str) and channel not in channels:
            problems.append(problem(spec, ("entities", name, "events", "channel"),
                                    unknown("channel", channel, channels)))
    for name, channel in channels.items():
        problems += _lifetimes(spec, name, as_dict(channel))
        problems += _callback_paths(spec, ("channels", name, "callback"), as_dict(as_dict(channel).get("callback")))
        problems += _static_comparisons(spec, name, as_dict(channel))
    return problems


def _static_comparisons(spec: Spec, name: str, channel: dict[str, Any]) -> list[SpecProblem]:
    """A static channel (no `register`: configured in the source system) has no token or id of ours."""
    if "register" in channel:
        return []
    rules = as_list(as_dict(channel.get("callback")).get("verify"))
    return [problem(spec, ("channels", name, "callback", "verify", index, "equals"),
                    f"channel '{name}' has no register request (it is configured in the source system): there is "
                    f"no {rule['equals']} to compare with; verify a signature instead")
            for index, rule in enumerate(rules)
            if isinstance(rule, dict) and rule.get("equals") in ("channel.token", "channel.id")]


def _lifetimes(spec: Spec, name: str, channel: dict[str, Any]) -> list[SpecProblem]:
    written = {key: channel.get(key, default) for key, default in (("lifetime", "7d"), ("renew_before", "1d"))}
    try:
        lifetime, renew_before = (parse_duration(value) for value in written.values())
    except ValueError:  # the schema says which does not parse
        return []
    if renew_before < lifetime:
        return []
    return [problem(spec, ("channels", name, "renew_before"),
                    f"{written['renew_before']} is not shorter than the lifetime {written['lifetime']}: the channel "
                    "would be renewed at every tick")]


def _callback_paths(spec: Spec, base: JsonPath, callback: dict[str, Any]) -> list[SpecProblem]:
    found: list[tuple[JsonPath, Any]] = [((*base, "verify", index, "path"), as_dict(rule).get("path"))
                                         for index, rule in enumerate(as_list(callback.get("verify")))]
    found += [((*base, key), callback.get(key)) for key in ("ids", "operation")]
    problems = []
    for path, text in found:
        if isinstance(text, str):
            problems += [problem(spec, where, message) for where, message in compile_value("jmespath", text, path)[1]]
    return problems


def check_trigger(project: Project, spec: Spec) -> list[SpecProblem]:
    """A flow's `trigger.channel` is a channel of its source connector, through which its source entity is watched
    (the entity declares `events` for that channel)."""
    channel = as_dict(spec.data.get("trigger")).get("channel")
    stream = as_dict(spec.data.get("trigger")).get("stream")
    if isinstance(stream, str) and spec.name in project.flow_integration:
        return _check_stream(project, spec, stream)
    if not isinstance(channel, str) or spec.name not in project.flow_integration:
        return []
    source = as_dict(spec.data.get("from"))
    integration = project.integrations[project.flow_integration[spec.name]]
    connection = source.get("connection")
    role = as_dict(as_dict(integration.data.get("connections")).get(connection))
    connector_name = role.get("connector")
    connector = project.connectors.get(connector_name) if isinstance(connector_name, str) else None
    entity_name = source.get("entity")
    if connector is None or not isinstance(entity_name, str):
        return []  # an unknown connection or connector is reported by the flow checks
    where = ("trigger", "channel")
    channels = as_dict(connector.data.get("channels"))
    if channel not in channels:
        return [problem(spec, where, f"connector '{connector.name}' (source connection {connection}) has no channel "
                                     f"'{channel}'" + did_you_mean(channel, channels))]
    entity = as_dict(as_dict(connector.data.get("entities")).get(entity_name))
    events = as_dict(entity.get("events"))
    if not entity:
        return []  # an unknown entity is reported by the flow checks
    if not events:
        return [problem(spec, where, f"entity '{entity_name}' of connector '{connector.name}' cannot be watched: it "
                                     f"declares no 'events' (events: {{channel: {channel}, names: [...]}})")]
    if events.get("channel") != channel:
        return [problem(spec, where, f"entity '{entity_name}' of connector '{connector.name}' is watched through "
                                     f"channel '{events.get('channel')}', not '{channel}'")]
    return []


def _check_stream(project: Project, spec: Spec, stream: str) -> list[SpecProblem]:
    """A flow's `trigger.stream` is a stream of its source connector (events/stream*.py subscribe to it)."""
    connection = as_dict(spec.data.get("from")).get("connection")
    integration = project.integrations[project.flow_integration[spec.name]]
    connector_name = as_dict(as_dict(integration.data.get("connections")).get(connection)).get("connector")
    connector = project.connectors.get(connector_name) if isinstance(connector_name, str) else None
    if connector is None:
        return []  # an unknown connection or connector is reported by the flow checks
    streams = as_dict(connector.data.get("streams"))
    if stream in streams:
        return []
    return [problem(spec, ("trigger", "stream"), f"connector '{connector.name}' (source connection {connection}) "
                                                  f"has no stream '{stream}'" + did_you_mean(stream, streams))]
