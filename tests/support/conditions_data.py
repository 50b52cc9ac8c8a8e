"""Condition specs and a context shared by the condition tests: what holds, what is missing,
and what has the wrong type."""

from __future__ import annotations

from typing import Any

DETECTIONS = [
    {"class_name": "car", "score": 0.91, "area": 5200.0},
    {"class_name": "person", "score": 0.80, "area": 900.0},
    {"class_name": "person", "score": 0.40, "area": 300.0},
]
CTX: dict[str, Any] = {
    "det": {"classes": ["car", "person"], "count": 3, "boxes": DETECTIONS},
    "col": {"label": "red", "conf": 0.7, "night": False, "note": None},
}

BOX = "det.boxes"
OPERATOR_CASES = [  # (a spec that holds on CTX, one that does not)
    ({"contains": ["det.classes", "car"]}, {"contains": ["det.classes", "bus"]}),  # in a list
    ({"not_contains": ["det.classes", "bus"]}, {"not_contains": ["det.classes", "car"]}),
    ({"in": ["col.label", ["red", "blue"]]}, {"in": ["col.label", ["green"]]}),  # one of
    ({"not_in": ["col.label", ["green"]]}, {"not_in": ["col.label", ["red"]]}),
    ({"in": ["col.label", "bored"]}, {"in": ["col.label", "blue"]}),  # in a string: substring
    ("'count' in context['det']", "'speed' in context['det']"),  # in a mapping: a key
    ({"eq": ["col.label", "red"]}, {"eq": ["col.label", "blue"]}),  # strings
    ({"ne": ["col.label", "blue"]}, {"ne": ["col.label", "red"]}),
    ({"eq": ["col.night", False]}, {"eq": ["col.night", True]}),  # booleans
    ({"eq": ["det.classes", ["car", "person"]]}, {"eq": ["det.classes", ["car"]]}),  # lists
    ({"lt": ["det.count", 4]}, {"lt": ["det.count", 3]}),  # numbers
    ({"le": ["det.count", 3]}, {"le": ["det.count", 2]}),
    ({"gt": ["col.conf", 0.5]}, {"gt": ["col.conf", 0.7]}),
    ({"ge": ["col.conf", 0.7]}, {"ge": ["col.conf", 0.71]}),
    ({"lt": ["col.label", "sed"]}, {"gt": ["col.label", "sed"]}),  # strings are ordered too
    ({"exists": "col.label"}, {"exists": "col.note"}),  # present and not null
    ("context['col']['note'] == None", "context['col']['label'] == None"),  # null is None only
    ({"all": [True, {"eq": ["col.label", "red"]}]}, {"all": [True, False]}),
    ({"any": [False, {"eq": ["col.label", "red"]}]}, {"any": [False, False]}),
    ({"not": False}, {"not": True}),
    # at least 2 persons, not 3; without where every item counts
    ({"count": BOX, "where": {"class_name": "person"}, "ge": 2}, {"count": BOX, "ge": 4}),
    ({"count": BOX, "eq": 3}, {"count": BOX, "where": {"class_name": "person"}, "ge": 3}),
    # several tests on one field must all hold
    ({"count": BOX, "where": {"score": {"gt": 0.5, "lt": 0.9}}, "eq": 1}, {"count": BOX, "lt": 3}),
    # some car scoring >= 0.5 with area >= 4000; no person that big
    (
        {"some": BOX, "where": {"class_name": "car", "score": {"ge": 0.5}, "area": {"ge": 4000}}},
        {"some": BOX, "where": {"class_name": "person", "area": {"ge": 4000}}},
    ),
    # where tests use the operator table; items that are not mappings never match
    (
        {"some": BOX, "where": {"class_name": {"in": ["car"]}}},
        {"some": "det.classes", "where": {"x": 1}},
    ),
    ({"some": BOX}, {"some": "det.nothing"}),  # without where: the list is not empty
]


MISSING_CASES = [
    # every kind of comparison, on data that is not there
    "'car' in context['det']['classes']",
    "'car' not in context['det']['classes']",
    "context['det']['count'] != 2",
    "context['det']['count'] >= 0",
    "len(context['det']['boxes']) == 0",
    "context['col']['label'] not in ['red']",
    "context['col']['label'] != None",
    "context['col']['label'] == None",
]


MISMATCH_CASES = [
    # a string is not ordered against a number
    ({"gt": ["col.label", 1]}, CTX),
    # a null never compares with a value
    ({"ne": ["col.note", "red"]}, CTX),
    ({"lt": ["col.note", 1]}, CTX),
    # True is not 1, either way round
    ({"eq": ["col.night", 0]}, CTX),
    ({"in": ["x.flag", [1, 2]]}, {"x": {"flag": True}}),
    # a kind mismatch makes != false too
    ({"ne": ["col.label", 3]}, CTX),
    # an index past the end; a key into a list
    ({"gt": ["det.boxes.9.score", 0]}, CTX),
    ({"eq": ["det.classes.name", "car"]}, CTX),
    # a count of something that is not a list
    ({"count": "col.label", "ge": 0}, CTX),
]
