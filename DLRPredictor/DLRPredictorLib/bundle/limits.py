"""Bounds on what a bundle file may make a reader do: no file may hang or exhaust the machine.

Every check here looks at structure only (headers, declared sizes, event streams), in time linear
in the file's size and memory bounded by it, before anything is expanded or allocated:

- JSON (manifest.json, pipeline.json, any .json): nesting deeper than :data:`MAX_NESTING`;
- YAML (radiomics.yaml): nesting deeper than :data:`MAX_NESTING`, or more than
  :data:`MAX_YAML_NODES` nodes once aliases are expanded ("billion laughs");
- .npz: members whose declared uncompressed size exceeds :data:`MAX_ARRAY_BYTES` in all or
  :data:`MAX_EXPANSION` times the file's size (a zip bomb), and every member's .npy header;
- .npy: a header whose shape and dtype need a different number of bytes than the data holds
  (numpy allocates the declared shape before it reads);
- .safetensors: a header larger than the file, tensors whose shape and dtype disagree with their
  byte span, spans outside the data, overlapping, or leaving bytes unaccounted for.

Each refusal is a :class:`ValueError` whose text the caller puts in one BundleError line.
"""

from __future__ import annotations

import io
import math
import zipfile
from typing import Any

import numpy as np

#: Deepest nesting of JSON arrays/objects and YAML collections a bundle file may have.
MAX_NESTING = 64
#: Most YAML nodes a file may describe once every alias is expanded.
MAX_YAML_NODES = 100_000
#: Most bytes the arrays of one .npz or .npy file may take in memory.
MAX_ARRAY_BYTES = 1 << 30
#: Most times a .npz's arrays may be larger than the file (real ones are stored uncompressed).
MAX_EXPANSION = 100
#: Most bytes all the files of one bundle may hold (the shipped bundle holds about 45 MB).
MAX_BUNDLE_BYTES = 2 << 30
#: Largest safetensors header (the safetensors library refuses larger ones too).
MAX_SAFETENSORS_HEADER = 100 << 20

_SAFETENSORS_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


def check_nesting(value: Any) -> None:
    """Refuse parsed JSON nested deeper than :data:`MAX_NESTING` (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_NESTING:
            raise ValueError(f"it is nested more than {MAX_NESTING} levels deep")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def check_yaml(text: str) -> None:
    """Refuse YAML nested too deeply or expanding to too many nodes through aliases.

    Only the event stream is read (no object is built): each anchored node's expanded size is
    recorded, and an alias counts that many nodes where it appears.
    """
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    sizes: dict[str, int] = {}
    # One [anchor, nodes so far] per open collection; the bottom entry counts the documents.
    stack: list[list[Any]] = [[None, 0]]
    total = 0
    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                stack.append([event.anchor, 1])
                if len(stack) - 1 > MAX_NESTING:
                    raise ValueError(f"it is nested more than {MAX_NESTING} levels deep")
                continue
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                anchor, nodes = stack.pop()
            elif isinstance(event, yaml.ScalarEvent):
                anchor, nodes = event.anchor, 1
            elif isinstance(event, yaml.AliasEvent):
                if event.anchor not in sizes:
                    raise ValueError(f"alias '*{event.anchor}' names no anchor defined before it")
                anchor, nodes = None, sizes[event.anchor]
            else:
                continue
            if anchor is not None:
                sizes[anchor] = nodes
            stack[-1][1] += nodes
            total = sum(entry[1] for entry in stack)
            if total > MAX_YAML_NODES:
                raise ValueError(f"its aliases expand to more than {MAX_YAML_NODES} values (an alias bomb)")
    except yaml.YAMLError as e:
        raise ValueError(f"it is not valid YAML: {' '.join(str(e).split())[:200]}") from e


def npy_header(f: Any, available: int, name: str) -> tuple[np.dtype, int]:
    """Read a .npy header from ``f`` and check that its array fills exactly the bytes that follow.

    Args:
        f: a binary stream positioned at the start of the .npy data.
        available: bytes of the whole .npy (header included).
        name: the array's name, for messages.

    Returns:
        The dtype and the array's size in bytes.
    """
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = fmt.read_array_header_2_0(f)
    else:
        raise ValueError(f"array '{name}' has an unknown .npy version {version}")
    if dtype.hasobject:
        # Same wording as numpy's own refusal, which the caller recognises.
        raise ValueError(f"array '{name}' is an object array: allow_pickle=False refuses it")
    nbytes = math.prod(int(n) for n in shape) * dtype.itemsize
    data = available - f.tell()
    if nbytes > MAX_ARRAY_BYTES or nbytes != data:
        raise ValueError(
            f"array '{name}' declares shape {tuple(shape)} of {dtype} ({nbytes} bytes) but holds "
            f"{data} bytes of data"
        )
    return dtype, nbytes


def check_npz(content: bytes) -> None:
    """Refuse a .npz whose members are not arrays, expand too far, or have lying headers."""
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        infos = z.infolist()
        if any(not info.filename.endswith(".npy") for info in infos):
            raise ValueError("it holds members that are not arrays")
        declared = sum(info.file_size for info in infos)
        limit = min(MAX_ARRAY_BYTES, MAX_EXPANSION * len(content))
        if declared > limit:
            raise ValueError(
                f"its arrays would take {declared} bytes uncompressed, more than {limit} "
                f"({MAX_EXPANSION} times the file, at most {MAX_ARRAY_BYTES}): a zip bomb"
            )
        for info in infos:
            # zipfile never returns more than the declared file_size; a member that inflates to
            # more or less fails its CRC check when numpy reads it afterwards.
            with z.open(info) as f:
                npy_header(f, info.file_size, info.filename[: -len(".npy")])


def check_npy(content: bytes) -> None:
    """Refuse a .npy whose header does not describe exactly its data."""
    npy_header(io.BytesIO(content), len(content), "array")


def check_safetensors(content: bytes, parse_header: Any) -> None:
    """Refuse a malformed safetensors file: header, dtypes, shapes and byte spans.

    Args:
        content: the file's bytes.
        parse_header: parses the header's JSON text (refusing duplicate keys and deep nesting).
    """
    if len(content) < 8:
        raise ValueError("its header is malformed (the file is shorter than 8 bytes)")
    n = int.from_bytes(content[:8], "little")
    if n > len(content) - 8 or n > MAX_SAFETENSORS_HEADER:
        raise ValueError(f"its header is malformed (it declares {n} bytes, more than the file holds)")
    try:
        header = parse_header(content[8 : 8 + n].decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError("its header is malformed (not UTF-8 text)") from e
    if not isinstance(header, dict):
        raise ValueError("its header is malformed (not a JSON object)")
    data_len = len(content) - 8 - n
    spans: list[tuple[int, int, str]] = []
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise ValueError("its header is malformed (__metadata__ must map names to text)")
            continue
        spans.append(_tensor_span(key, entry, data_len))
    spans.sort()
    end = 0
    previous = ""
    for begin, stop, key in spans:
        if begin < end:
            raise ValueError(f"tensors '{previous}' and '{key}' overlap in the data")
        if begin > end:
            raise ValueError(f"bytes {end}-{begin} of the data belong to no tensor")
        end, previous = stop, key
    if end != data_len:
        raise ValueError(f"bytes {end}-{data_len} of the data belong to no tensor")


def _tensor_span(key: str, entry: Any, data_len: int) -> tuple[int, int, str]:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise ValueError(f"tensor '{key}' needs exactly dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in _SAFETENSORS_ITEMSIZE:
        raise ValueError(f"tensor '{key}' has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_count(d) for d in shape):
        raise ValueError(f"tensor '{key}' has a malformed shape {shape!r}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_count(o) for o in offsets):
        raise ValueError(f"tensor '{key}' has malformed data_offsets {offsets!r}")
    begin, stop = offsets
    if not begin <= stop <= data_len:
        raise ValueError(f"tensor '{key}' has data_offsets {offsets} outside the {data_len} bytes of data")
    nbytes = math.prod(shape) * _SAFETENSORS_ITEMSIZE[dtype]
    if nbytes != stop - begin:
        raise ValueError(
            f"tensor '{key}' declares shape {shape} of {dtype} ({nbytes} bytes) but its data_offsets "
            f"span {stop - begin} bytes"
        )
    return begin, stop, key


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
