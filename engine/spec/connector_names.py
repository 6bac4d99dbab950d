"""Names a connector template may use: what the connector declares, and what the runtime puts in a template's context.

A missing name renders as empty text at run time (`connection.api_ur` made `https://.crm.example.com`), so
validate refuses a name no template context holds, a `connection.x` the connector does not declare as a setting,
and a `secrets.x` it does not declare as a secret (when it declares settings, or secrets, at all).
"""

from __future__ import annotations

from jinja2 import meta, nodes

from ml_connector.spec.checkutil import as_dict, did_you_mean, problem
from ml_connector.spec.expressions import jinja_sources
from ml_connector.spec.model import Spec
from ml_connector.spec.problems import SpecProblem
from ml_connector.transform.expressions import ENV

#: Every name the runtime puts in a connector template's context (engine.http, engine.sync): the connection's
#: settings and secrets everywhere, the rest in the positions that use them (a token in an auth header, the
#: response in a response rule's message, the record in a write, `since` in a read body...).
CONTEXT_NAMES = frozenset({
    "connection", "secrets", "token", "body", "status", "headers", "error", "record", "records", "target_id",
    "existing", "match", "action", "id", "keys", "since", "field",
    "channel",  # a channel request's: id, token, url, expires_at, events, entity (engine.events.channels)
    "job",  # a bulk read job's requests: id, token, number, status, window (engine.http.jobs)
    "window",  # a windowed bulk read's job: start, end (engine.http.job_windows)
    "page",  # a query read's paging values, in its body template: offset, limit, number, cursor, after
    "stream",  # a change stream's: entity (its topic), token and base_url (its metadata) (engine.events.stream*)
})
DECLARED = (("connection", "settings", "setting"), ("secrets", "secrets", "secret"))


def check_connector_names(spec: Spec) -> list[SpecProblem]:
    """Unknown names, undeclared settings and undeclared secrets in the connector's Jinja templates."""
    declared = as_dict(spec.data.get("connection"))
    problems: list[SpecProblem] = []
    for where, expr in spec.expressions.items():
        for path, text in jinja_sources(where, expr):
            tree = ENV.parse(text)
            for name in sorted(meta.find_undeclared_variables(tree) - CONTEXT_NAMES - set(ENV.globals)):
                message = f"unknown name '{name}' in a connector template" + did_you_mean(name, sorted(CONTEXT_NAMES))
                problems.append(problem(spec, path, message))
            for root, kind, singular in DECLARED:
                if kind not in declared:  # a connector that declares none takes what the connection gives
                    continue
                known = as_dict(declared.get(kind))
                for used in _attributes(tree, root):
                    if used not in known:
                        message = f"connector '{spec.name}' declares no {singular} '{used}'"
                        problems.append(problem(spec, path, message + did_you_mean(used, known)))
    return problems


def _attributes(tree: nodes.Template, root: str) -> list[str]:
    """`x` of every `root.x`, `root['x']` and `root.get('x')` in a template (a method called is not a name)."""
    called = {id(call.node): call for call in tree.find_all(nodes.Call)}
    found = []
    for node in tree.find_all(nodes.Getattr):
        if not (isinstance(node.node, nodes.Name) and node.node.name == root):
            continue
        call = called.get(id(node))
        if call is None:
            found.append(node.attr)
        elif node.attr == "get" and call.args and isinstance(call.args[0], nodes.Const):
            found += [call.args[0].value] if isinstance(call.args[0].value, str) else []
    found += [
        node.arg.value
        for node in tree.find_all(nodes.Getitem)
        if isinstance(node.node, nodes.Name) and node.node.name == root
        and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str)
    ]
    return found
