"""Every field a mapping reads or writes, checked against the entities' declared `fields`.

A misspelt source name does not fail at run time: JMESPath and the templates read it as null, and the target
gets null or " Johnson". So validate reads every expression of a flow (filter, key, let, fields, child lists,
target_id, from.each) over the declared shape of the source record, and every target path of `fields` against
the target's declared writable fields. An entity without `fields` is not checked; custom fields (the entity's
`custom_fields.object`) are named by label and checked by their catalog at run time.
"""

from __future__ import annotations

from typing import Any, Literal

from ml_connector.spec.checkutil import as_dict, as_list, problem
from ml_connector.spec.field_shapes import (
    ANY,
    ANY_FIELD,
    Field,
    Shape,
    element,
    globals_as_fields,
    object_shape,
    read_jmespath,
    read_value,
    unknown_field,
)
from ml_connector.spec.model import Project, Spec
from ml_connector.spec.problems import JsonPath, SpecProblem


def check_connector_fields(spec: Spec) -> list[SpecProblem]:
    """An entity that declares fields declares its `key`, `updated` and incremental field among them."""
    problems = []
    for name, entity in as_dict(spec.data.get("entities")).items():
        entity = as_dict(entity)
        declared = entity.get("fields")
        if not isinstance(declared, dict):
            continue
        shape = object_shape(f"{spec.name}.{name}", declared)
        incremental = as_dict(as_dict(entity.get("read")).get("incremental"))
        for path, value in ((("key",), entity.get("key")), (("updated",), entity.get("updated")),
                            (("read", "incremental", "field"), incremental.get("field"))):
            if isinstance(value, str) and value not in declared:
                problems.append(problem(spec, ("entities", name, *path), unknown_field(value, shape)))
        flag = as_dict(entity.get("deletes")).get("flag")
        if isinstance(flag, str):  # a JMESPath over the record
            found: list[str] = []
            read_jmespath(flag, _with_custom(shape, entity), found.append)
            problems += [problem(spec, ("entities", name, "deletes", "flag"), message) for message in found]
    return problems


def _with_custom(shape: Shape, entity: dict[str, Any]) -> Shape:
    """The record shape with the custom-field object, named by label and checked by its catalog at run time."""
    custom = as_dict(entity.get("custom_fields")).get("object")
    return shape.with_fields({custom: ANY_FIELD}) if isinstance(custom, str) else shape


def check_mapping_fields(project: Project, spec: Spec) -> list[SpecProblem]:
    """Reads against the source entity's declared fields, writes against the target's writable ones."""
    problems: list[SpecProblem] = []
    source = _entity_shape(project, spec, "from")
    if source is not None:
        problems += _read_problems(project, spec, source)
    target = _entity_shape(project, spec, "to")
    if target is not None and target.fields is not None:
        problems += _write_problems(spec, as_dict(spec.data.get("fields")), target, ("fields",))
    return problems


def _entity_shape(project: Project, spec: Spec, side: Literal["from", "to"]) -> Shape | None:
    """The declared shape of a flow's source or target record (None: the entity declares no fields)."""
    entity_name = as_dict(spec.data.get(side)).get("entity")
    try:
        connector_name = project.flow_connector(spec.name, side)
        entity = as_dict(project.entity(connector_name, str(entity_name)))
    except (KeyError, TypeError):
        return None  # an unknown connection or entity is reported by the flow checks
    declared = entity.get("fields")
    if not isinstance(declared, dict):
        return None
    label = f"{connector_name}.{entity_name}"
    extra: dict[str, Field] = {}
    if side == "from":
        expand = as_dict(entity.get("expand"))
        for name in as_list(as_dict(spec.data.get("from")).get("expand")):
            if isinstance(name, str) and name in expand:
                child = as_dict(expand[name]).get("fields")
                item = object_shape(f"{label}.{name}[]", child) if isinstance(child, dict) else ANY
                extra[name] = Field("array", False, Shape("array", f"{label}.{name}", item=item))
    return _with_custom(object_shape(label, declared), entity).with_fields(extra)


def _read_problems(project: Project, spec: Spec, entity: Shape) -> list[SpecProblem]:
    """Every name read by the flow's expressions, in the context the runtime evaluates each one."""
    data = spec.data
    problems: list[SpecProblem] = []

    def read(path: JsonPath, value: Any, shape: Shape) -> Shape:
        def report(message: str) -> None:
            problems.append(problem(spec, path, message))

        return read_value(value, shape, report)

    record = entity
    each = as_dict(data.get("from")).get("each")
    if isinstance(each, str):
        found: list[str] = []
        items = element(read_jmespath(each, entity, found.append))
        problems += [problem(spec, ("from", "each"), message) for message in found]
        record = items.declared_or_open({"_parent": Field("object", False, entity)})
    if "key" in data:
        read(("key",), data["key"], record)
    context = record.with_fields(globals_as_fields())
    for name, value in as_dict(data.get("let")).items():
        context = context.with_fields({str(name): Field("any", False, read(("let", name), value, context))})
    for name in ("filter", "target_id"):
        if name in data:
            read((name,), data[name], context)
    _read_fields(as_dict(data.get("fields")), ("fields",), context, read)
    return problems


def _read_fields(fields: dict[Any, Any], path: JsonPath, context: Shape, read: Any) -> None:
    for target, value in fields.items():
        if isinstance(value, dict) and "each" in value:  # a child list: its fields see each item over the context
            items = element(read((*path, target, "each"), value["each"], context))
            extras = {"_parent": Field("object", False, context), "loop": ANY_FIELD}
            if items.kind == "object" and items.fields is not None:
                child = items.with_fields({**(context.fields or {}), **extras})
            else:  # undeclared items: any name may be theirs, only `_parent.…` is checked
                child = items.declared_or_open(extras)
            _read_fields(as_dict(value.get("fields")), (*path, target, "fields"), child, read)
        else:
            read((*path, target), value, context)


def _write_problems(spec: Spec, fields: dict[Any, Any], target: Shape, path: JsonPath) -> list[SpecProblem]:
    """Each target path names declared, writable fields (a child list an array of objects)."""
    problems = []
    for name, value in fields.items():
        shape, message = target, None
        for part in str(name).split("."):
            if shape.kind != "object" or shape.fields is None:
                break  # not declared below here
            declared = shape.fields.get(part)
            if declared is None:
                message = unknown_field(part, shape)
                break
            if not declared.writable:
                message = f"'{part}' of {shape.label} is read only (writable: false): mappings cannot write it"
                break
            shape = declared.shape
        if message:
            problems.append(problem(spec, (*path, name), message))
        elif isinstance(value, dict) and "each" in value and shape.kind == "array" and shape.item is not None:
            problems += _write_problems(spec, as_dict(value.get("fields")), shape.item, (*path, name, "fields"))
    return problems
