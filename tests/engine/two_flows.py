"""A workspace of two flows from one source into one target, the second depending on the first: what tests of a run
that stops, skips or crashes part-way need. Each test brings its own source connector."""

from __future__ import annotations

import textwrap


def two_flow_files(first: str, second: str) -> dict[str, str]:
    """The spec files beside ``connectors/src.yaml``: flow `first` reads src entity ``first``, `second` reads
    ``second`` (and depends on `first`); both create dst items. Indented as the callers' own texts are (8 spaces),
    so that what they replace in them lines up."""
    files = {
        "connectors/dst.yaml": """
            connector: dst
            base_url: http://api.test/dst
            auth: {key: {type: api_key, header: x-key, value: k-literal}}
            entities:
              item: {key: id, write: {strategy: create_only, create: {method: POST, path: /items, id: data.id}}}
            """,
        "mappings/p/integration.yaml": """
            integration: p
            connections: {src: {connector: src}, dst: {connector: dst}}
            flows: [first.yaml, second.yaml]
            """,
        "mappings/p/first.yaml": f"""
            flow: first
            from: {{connection: src, entity: {first}}}
            to: {{connection: dst, entity: item}}
            key: code
            fields: {{name: name}}
            """,
        "mappings/p/second.yaml": f"""
            flow: second
            from: {{connection: src, entity: {second}}}
            to: {{connection: dst, entity: item}}
            depends_on: [first]
            key: code
            fields: {{name: name}}
            """,
        "workspace.yaml": """
            connectors: [connectors]
            integrations: [mappings/p]
            connections: {src: {connector: src}, dst: {connector: dst}}
            """,
    }
    return {name: textwrap.indent(textwrap.dedent(text), " " * 8) for name, text in files.items()}
