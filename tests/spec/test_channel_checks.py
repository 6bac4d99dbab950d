"""`validate` on channels: a flow's trigger names a channel its source entity is watched through; durations parse."""

from __future__ import annotations

from pathlib import Path

from ml_connector.config import ConnectorConfig
from ml_connector.spec import load_specs

CONNECTOR = """\
connector: watched
base_url: https://api.example.com/v2
auth:
  key: {type: api_key, header: x-key, value: "{{ secrets.key }}"}
channels:
  changes:
    register:
      path: /actions/watch
      body: {channel_id: "{{ channel.id }}", token: "{{ channel.token }}", url: "{{ channel.url }}"}
      ok_when: "watch[0].status == 'success'"
    lifetime: 7d
    default_lifetime: 1h
    renew_before: 1d
    callback:
      verify: [{path: token, equals: channel.token}]
      ids: ids
entities:
  account:
    key: id
    read: {path: /accounts}
    get: {path: "/accounts/{{ id }}"}
    events: {channel: changes, names: [Accounts.all]}
  contact:
    key: id
    read: {path: /contacts}
    get: {path: "/contacts/{{ id }}"}
    write: {strategy: create_only, create: {method: POST, path: /contacts}}
"""
FLOW = """\
flow: accounts
from: {connection: api, entity: account}
to: {connection: api, entity: contact}
key: id
fields: {name: name}
trigger: {channel: changes}
"""


def problems_of(tmp_path: Path, connector: str = CONNECTOR, flow: str = FLOW) -> list[str]:
    (tmp_path / "watched.yaml").write_text(connector)
    (tmp_path / "pair").mkdir(exist_ok=True)
    (tmp_path / "pair" / "integration.yaml").write_text(
        "integration: pair\nconnections: {api: {connector: watched}}\nflows: [accounts.yaml]\n")
    (tmp_path / "pair" / "accounts.yaml").write_text(flow)
    _, problems = load_specs([tmp_path])
    return [str(p).replace(f"{tmp_path}/", "") for p in problems]


def line_of(text: str, marker: str) -> int:
    [line] = [n for n, row in enumerate(text.splitlines(), 1) if marker in row]
    return line


def test_a_valid_channel_and_trigger_pass_and_are_typed(tmp_path: Path) -> None:
    assert problems_of(tmp_path) == []
    project, _ = load_specs([tmp_path])
    config = project.connectors["watched"].config
    assert isinstance(config, ConnectorConfig)
    channel = config.channels["changes"]
    assert (channel.lifetime, channel.default_lifetime, channel.renew_before) == (604800.0, 3600.0, 86400.0)
    assert channel.id_kind == "number" and channel.register.method == "POST" and channel.renew is None
    assert channel.callback.runtime().answer_status == 200 and channel.callback.max_bytes == 65536
    events = config.entities["account"].events
    assert events is not None and events.channel == "changes" and events.names == ("Accounts.all",)


def test_a_trigger_naming_an_unknown_channel(tmp_path: Path) -> None:
    flow = FLOW.replace("trigger: {channel: changes}", "trigger: {channel: chnages}")
    assert problems_of(tmp_path, flow=flow) == [
        f"pair/accounts.yaml:{line_of(flow, 'trigger')}: trigger.channel: connector 'watched' (source connection "
        "api) has no channel 'chnages' (did you mean 'changes'?)"]


def test_a_trigger_on_an_entity_without_events(tmp_path: Path) -> None:
    flow = FLOW.replace("entity: account}\nto", "entity: contact}\nto")
    assert problems_of(tmp_path, flow=flow) == [
        f"pair/accounts.yaml:{line_of(flow, 'trigger')}: trigger.channel: entity 'contact' of connector 'watched' "
        "cannot be watched: it declares no 'events' (events: {channel: changes, names: [...]})"]


def test_events_naming_an_unknown_channel(tmp_path: Path) -> None:
    connector = CONNECTOR.replace("events: {channel: changes,", "events: {channel: updates,")
    assert problems_of(tmp_path, connector=connector) == [
        f"pair/accounts.yaml:{line_of(FLOW, 'trigger')}: trigger.channel: entity 'account' of connector 'watched' "
        "is watched through channel 'updates', not 'changes'",
        f"watched.yaml:{line_of(connector, 'channel: updates')}: entities.account.events.channel: unknown channel "
        "'updates' (known: changes)"]


def test_a_duration_that_does_not_parse(tmp_path: Path) -> None:
    connector = CONNECTOR.replace("lifetime: 7d", "lifetime: 7 days")
    [problem] = problems_of(tmp_path, connector=connector)
    assert problem.startswith(f"watched.yaml:{line_of(connector, '  lifetime:')}: channels.changes.lifetime: "
                              "'7 days' does not match")


def test_a_lifetime_shorter_than_renew_before(tmp_path: Path) -> None:
    connector = CONNECTOR.replace("lifetime: 7d", "lifetime: 12h")
    assert problems_of(tmp_path, connector=connector) == [
        f"watched.yaml:{line_of(connector, 'renew_before')}: channels.changes.renew_before: 1d is not shorter than "
        "the lifetime 12h: the channel would be renewed at every tick"]


def test_callback_paths_are_jmespath(tmp_path: Path) -> None:
    connector = CONNECTOR.replace("ids: ids", "ids: \"ids[\"").replace("{path: token,", "{path: \"to ken\",")
    problems = problems_of(tmp_path, connector=connector)
    assert [p.split(": ")[0:2] for p in problems] == [
        [f"watched.yaml:{line_of(connector, 'verify')}", "channels.changes.callback.verify[0].path"],
        [f"watched.yaml:{line_of(connector, 'ids:')}", "channels.changes.callback.ids"]]
    assert all(": invalid JMESPath: " in p for p in problems)


def test_a_static_channel_cannot_compare_with_a_channel_token_or_id(tmp_path: Path) -> None:
    """A channel configured in the source system (no `register`) has no token or id of ours to compare with:
    validate says so with file:line, before serve refuses to start."""
    static = CONNECTOR.replace("""    register:
      path: /actions/watch
      body: {channel_id: "{{ channel.id }}", token: "{{ channel.token }}", url: "{{ channel.url }}"}
      ok_when: "watch[0].status == 'success'"
""", "")
    assert problems_of(tmp_path, connector=static) == [
        f"watched.yaml:{line_of(static, 'verify')}: channels.changes.callback.verify[0].equals: channel 'changes' "
        "has no register request (it is configured in the source system): there is no channel.token to compare "
        "with; verify a signature instead"]
