"""Checks of paginators that page inside a JSON body (`in: body`, or `in: template` where the body template places
the values): only a POST read sends a body to page in."""

from __future__ import annotations

from typing import Any

from ml_connector.spec.checkutil import as_dict, problem
from ml_connector.spec.model import Spec
from ml_connector.spec.problems import SpecProblem


def check_body_paging(spec: Spec) -> list[SpecProblem]:
    """A paginator with `in: body` is named only by POST reads with an object body (catalogs and expansions are
    GET requests)."""
    data = spec.data
    in_body = {name for name, p in as_dict(data.get("paginators")).items() if as_dict(p).get("in") == "body"}
    in_template = {name for name, p in as_dict(data.get("paginators")).items() if as_dict(p).get("in") == "template"}
    problems = []
    for entity_name, entity in as_dict(data.get("entities")).items():
        entity = as_dict(entity)
        uses: list[tuple[tuple[str, ...], Any, str | None]] = [
            (("read",), entity.get("read"), None),
            (("custom_fields", "catalog"), as_dict(entity.get("custom_fields")).get("catalog"),
             "a field catalog is read by GET"),
            *((("expand", name), expansion, "an expansion is read by GET")
              for name, expansion in as_dict(entity.get("expand")).items()),
        ]
        for path, section, why in uses:
            section = as_dict(section)
            name = section.get("paginator")
            if name in in_template:  # the body template places the paging values: a POST read with a body
                if why is None and section.get("method", "GET") == "POST" and "body" in section:
                    continue
                why = why or "this read sends no body to place them in; give it method: POST and a body"
                problems.append(problem(spec, ("entities", entity_name, *path, "paginator"),
                                        f"paginator '{name}' pages in the body template (in: template), but {why}"))
                continue
            if name not in in_body:
                continue
            if why is None and section.get("method", "GET") == "POST":
                if "body" in section and not isinstance(section["body"], dict):
                    problems.append(problem(spec, ("entities", entity_name, *path, "body"),
                                            f"paginator '{name}' pages in the body (in: body): the body must be "
                                            "a JSON object"))
                continue
            why = why or "this read is a GET; give it method: POST"
            problems.append(problem(spec, ("entities", entity_name, *path, "paginator"),
                                    f"paginator '{name}' pages in the body (in: body), but {why}"))
    return problems
