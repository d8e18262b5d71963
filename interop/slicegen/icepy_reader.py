"""Read the type definitions out of slice2py-generated Python (Ice 3.6 or 3.7).

Each generated module is executed against small stand-ins for the ``Ice`` and
``IcePy`` runtime modules that only record what the module defines.  Imports of
other generated modules are answered with empty stubs, so every file is read in
isolation and type references become plain scoped names.  Nothing from ZeroC's
runtime is needed, which keeps this usable with stdlib Python only.

The result is a list of definitions, in source order, as plain dicts:

    kind: class | interface | exception | struct | sequence | dictionary |
          enum | fwd | const
    id:   '::omero::model::Dataset'
    ...   kind-specific keys (see the ``_define*`` functions below)

Type references are strings: builtins ('bool', 'byte', 'short', 'int', 'long',
'float', 'double', 'string', 'Value', 'Object*') or scoped ids, with a trailing
'*' for proxies.
"""

import builtins
import inspect
import keyword
import sys
import types

BUILTIN_TYPES = {
    "_t_bool": "bool",
    "_t_byte": "byte",
    "_t_short": "short",
    "_t_int": "int",
    "_t_long": "long",
    "_t_float": "float",
    "_t_double": "double",
    "_t_string": "string",
    "_t_Object": "Value",
    "_t_Value": "Value",
    "_t_ObjectPrx": "Object*",
    "_t_LocalObject": "LocalObject",
}


class TypeRef:
    """A reference to a Slice type by its scoped name."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


def type_name(ref):
    if ref is None:
        return None
    if isinstance(ref, TypeRef):
        return ref.name
    raise TypeError("unexpected type reference %r" % (ref,))


class _PlaceholderMeta(type):
    def __getattr__(cls, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        # e.g. an enumerator of an enum defined in another file, used as a
        # default value.
        return EnumBase(attr, None)


class Placeholder(metaclass=_PlaceholderMeta):
    """Stands in for any runtime class a generated module derives from."""

    def __init__(self, *args, **kwargs):
        pass


class EnumBase:
    def __init__(self, name, value):
        self.name = name
        self.value = value
        self._enum_id = None


class OperationMode:
    Normal = "Normal"
    Nonmutating = "Nonmutating"
    Idempotent = "Idempotent"


class FormatType:
    DefaultFormat = "DefaultFormat"
    CompactFormat = "CompactFormat"
    SlicedFormat = "SlicedFormat"


class ModuleNS(types.ModuleType):
    """A Slice module namespace; unknown names resolve by convention."""

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        scope = "::" + self.__name__.replace(".", "::") + "::"
        if attr.startswith("_t_"):
            name = attr[3:]
            if name.endswith("Prx"):
                return TypeRef(scope + name[:-3] + "*")
            if name.endswith("Disp"):
                return TypeRef(scope + name[:-4])
            return TypeRef(scope + name)
        value = type(attr, (Placeholder,), {})
        setattr(self, attr, value)
        return value


class Operation:
    def __init__(self, name, mode, send_mode, amd, fmt, meta, in_params, out_params, ret, excs):
        self.name = name
        self.mode = mode
        self.send_mode = send_mode
        self.amd = bool(amd)
        self.format = fmt
        self.meta = tuple(meta)
        self.in_params = [_param(p) for p in in_params]
        self.out_params = [_param(p) for p in out_params]
        self.ret = _param(ret) if ret is not None else None
        self.exceptions = [type_name(e) for e in excs]
        self.deprecated = False

    def deprecate(self, _reason):
        self.deprecated = True


def _param(p):
    meta, ref, optional, tag = p
    return {"type": type_name(ref), "optional": bool(optional), "tag": tag, "meta": tuple(meta)}


def _member(m):
    name, meta, ref, optional, tag = m
    return {"name": name, "type": type_name(ref), "optional": bool(optional), "tag": tag, "meta": tuple(meta)}


def _struct_member(m):
    name, meta, ref = m[:3]
    return {"name": name, "type": type_name(ref), "optional": False, "tag": 0, "meta": tuple(meta)}


class Recorder:
    """Collects definitions while one generated file executes."""

    def __init__(self):
        self.defs = []
        self.modules = {}
        self.by_id = {}
        self.pyclass = {}

    def add(self, d, pyclass=None):
        self.defs.append(d)
        if d["kind"] != "fwd":
            self.by_id.setdefault(d["id"], d)
        if pyclass is not None:
            self.pyclass[d["id"]] = pyclass

    # --- Ice stand-in -----------------------------------------------------

    def open_module(self, name):
        mod = self.modules.get(name)
        if mod is None:
            mod = ModuleNS(name)
            self.modules[name] = mod
        return mod

    def make_ice(self):
        ice = types.ModuleType("Ice")
        ice.openModule = self.open_module
        ice.updateModule = lambda *a, **k: None
        ice.updateModules = lambda *a, **k: None
        ice.createTempClass = lambda: None
        ice.getType = lambda o: type(o)
        ice.Unset = None
        ice.sliceChecksums = {}
        ice._struct_marker = object()
        ice.OperationMode = OperationMode
        ice.FormatType = FormatType
        ice.EnumBase = EnumBase
        for name in ("Object", "Value", "ObjectPrx", "UserException", "LocalException",
                     "Exception", "Blobject", "LocalObject", "InterfaceByValue"):
            setattr(ice, name, type(name, (Placeholder,), {}))
        return ice

    # --- IcePy stand-in ---------------------------------------------------

    def make_icepy(self):
        icepy = types.ModuleType("IcePy")
        for attr, name in BUILTIN_TYPES.items():
            setattr(icepy, attr, TypeRef(name))
        icepy.Operation = Operation
        icepy.declareClass = self.declare_class
        icepy.declareValue = self.declare_class
        icepy.declareProxy = lambda id_: TypeRef(id_ + "*")
        icepy.defineProxy = lambda id_, t: TypeRef(id_ + "*")
        icepy.defineClass = self.define_class
        icepy.defineValue = self.define_value
        icepy.defineException = self.define_exception
        icepy.defineStruct = self.define_struct
        icepy.defineSequence = self.define_sequence
        icepy.defineDictionary = self.define_dictionary
        icepy.defineEnum = self.define_enum
        icepy.defineCustom = self.define_sequence
        icepy.stringify = repr
        return icepy

    def declare_class(self, id_):
        self.add({"kind": "fwd", "id": id_})
        return TypeRef(id_)

    def define_class(self, *args):
        if len(args) == 9:
            # Ice 3.6: classes and interfaces alike.
            id_, cls, compact, meta, abstract, preserve, base, ifaces, members = args
            self.add({
                "kind": "class", "id": id_, "compact": compact, "meta": tuple(meta),
                "preserve": bool(preserve), "base": type_name(base),
                "interfaces": [type_name(i) for i in ifaces],
                "members": [_member(m) for m in members], "abstract": bool(abstract),
                "ice36": True,
            }, cls)
        else:
            # Ice 3.7: the servant ("Disp") side of an interface or of a
            # class with operations.
            id_, cls, meta, base, ifaces = args
            d = self.by_id.get(id_)
            if d is not None:
                d["disp_bases"] = [type_name(i) for i in ifaces] + (
                    [type_name(base)] if base is not None else [])
                self.pyclass[id_ + "#disp"] = cls
        return TypeRef(id_)

    def define_value(self, id_, cls, compact, meta, preserve, is_interface, base, members):
        if is_interface:
            self.add({"kind": "interface", "id": id_, "meta": tuple(meta), "interfaces": []})
        else:
            self.add({
                "kind": "class", "id": id_, "compact": compact, "meta": tuple(meta),
                "preserve": bool(preserve), "base": type_name(base), "interfaces": [],
                "members": [_member(m) for m in members],
            }, cls)
        return TypeRef(id_)

    def define_exception(self, id_, cls, meta, preserve, base, members):
        self.add({
            "kind": "exception", "id": id_, "meta": tuple(meta), "preserve": bool(preserve),
            "base": type_name(base), "members": [_member(m) for m in members],
        }, cls)
        return TypeRef(id_)

    def define_struct(self, id_, cls, meta, members):
        self.add({"kind": "struct", "id": id_, "meta": tuple(meta),
                  "members": [_struct_member(m) for m in members]}, cls)
        return TypeRef(id_)

    def define_sequence(self, id_, meta, elem):
        self.add({"kind": "sequence", "id": id_, "meta": tuple(meta), "elem": type_name(elem)})
        return TypeRef(id_)

    def define_dictionary(self, id_, meta, key, value):
        self.add({"kind": "dictionary", "id": id_, "meta": tuple(meta),
                  "key": type_name(key), "value": type_name(value)})
        return TypeRef(id_)

    def define_enum(self, id_, cls, meta, enumerators):
        items = sorted(((v, e.name) for v, e in enumerators.items()))
        self.add({"kind": "enum", "id": id_, "meta": tuple(meta),
                  "enumerators": [(name, value) for value, name in items]}, cls)
        return TypeRef(id_)


def _stub_import(real_import, ice, icepy):
    def do_import(name, globals=None, locals=None, fromlist=(), level=0):
        top = name.split(".")[0]
        if top == "Ice" and not fromlist:
            return ice
        if name == "IcePy":
            return icepy
        if name in ("sys", "builtins", "threading", "os"):
            return real_import(name, globals, locals, fromlist, level)
        # Another generated module: an empty stand-in is enough, since
        # types are referenced by name through the module namespaces.
        return types.ModuleType(top if not fromlist else name)
    return do_import


def read_file(path, recorder=None):
    """Execute one generated file and return its definitions in order."""
    rec = recorder if recorder is not None else Recorder()
    ice = rec.make_ice()
    icepy = rec.make_icepy()
    with open(path, encoding="utf-8") as f:
        source = f.read()
    glb = {"__name__": "__icegen__", "__file__": path}
    bi = dict(vars(builtins))
    bi["__import__"] = _stub_import(builtins.__import__, ice, icepy)
    glb["__builtins__"] = bi
    exec(compile(source, path, "exec"), glb)
    _attach_operations(rec)
    defs = [d for d in rec.defs]
    defs.extend(_constants(rec))
    return defs


def _op_holder(rec, d):
    return rec.pyclass.get(d["id"] + "#disp") or rec.pyclass.get(d["id"])


def _attach_operations(rec):
    for d in rec.defs:
        if d["kind"] not in ("class", "interface"):
            continue
        holder = _op_holder(rec, d)
        ops = []
        if holder is not None:
            for attr, value in vars(holder).items():
                if attr.startswith("_op_") and isinstance(value, Operation):
                    value.param_names = _param_names(holder, value)
                    ops.append(value)
        d["ops"] = ops


def _param_names(holder, op):
    """Recover in-parameter names from the servant method's signature.

    Ice 3.6 names the dispatch method of an ["amd"] operation name_async and
    passes the callback first.
    """
    pyname = op.name if not keyword.iskeyword(op.name) else "_" + op.name
    candidates = [(pyname, 0), (pyname + "_async", 1)]
    for attr, skip in candidates:
        fn = vars(holder).get(attr)
        if fn is None:
            continue
        try:
            params = list(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            continue
        params = [p for p in params if p not in ("self", "current")][skip:]
        if len(params) == len(op.in_params):
            return params
    return None


def classify_36(def_lists):
    """Ice 3.6 defines interfaces with defineClass too: tell them apart.

    Over all files at once: a 3.6 definition is a class when it has data
    members or a base class, when another class names it as its base, or
    when some type uses it by value; anything else is an interface.  A wrong
    guess would show up as a kind mismatch in compare_with_omeropy.py.
    """
    bases, by_value = set(), set()
    for defs in def_lists:
        for d in defs:
            if d.get("base"):
                bases.add(d["base"])
            for t in _value_refs(d):
                if t and not t.endswith("*"):
                    by_value.add(t)
    for defs in def_lists:
        for d in defs:
            if d["kind"] == "class" and d.get("ice36"):
                if not d["members"] and d["base"] is None and d["id"] not in bases \
                        and d["id"] not in by_value:
                    d["kind"] = "interface"


def _value_refs(d):
    for m in d.get("members", ()):
        yield m["type"]
    for key in ("elem", "key", "value"):
        if isinstance(d.get(key), str):
            yield d[key]
    for op in d.get("ops", ()):
        for p in op.in_params + op.out_params + ([op.ret] if op.ret else []):
            yield p["type"]


def _constants(rec):
    out = []
    for modname, mod in rec.modules.items():
        scope = "::" + modname.replace(".", "::") + "::"
        for attr, value in vars(mod).items():
            if attr.startswith("_") or isinstance(value, (type, types.ModuleType)):
                continue
            if isinstance(value, (bool, int, float, str)):
                out.append({"kind": "const", "id": scope + attr, "value": value})
            elif isinstance(value, EnumBase):
                out.append({"kind": "const", "id": scope + attr, "value": value})
    return out


if __name__ == "__main__":
    for p in sys.argv[1:]:
        for d in read_file(p):
            print(d)
