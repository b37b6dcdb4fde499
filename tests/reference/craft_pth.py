"""Writes a crafted PyTorch zip file (torch.save's layout) whose one tensor claims SHAPE but
whose storage holds 16 bytes: what a zip bomb or a damaged file looks like to a reader that
trusts the shape. Needs no torch: the pickle names torch's classes without importing them.

usage: craft_pth.py OUT.pth NAME DIM [DIM...]
"""
import collections
import io
import pickle
import sys
import types
import zipfile

out, name, dims = sys.argv[1], sys.argv[2], [int(d) for d in sys.argv[3:]]

torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")


class FloatStorage:
    pass


def _rebuild_tensor_v2(*args):
    pass


FloatStorage.__module__ = "torch"
_rebuild_tensor_v2.__module__ = "torch._utils"
torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = FloatStorage, utils, _rebuild_tensor_v2
sys.modules["torch"], sys.modules["torch._utils"] = torch, utils


class Storage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class Tensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride, acc = [], 1
        for d in reversed(self.shape):
            stride.insert(0, acc)
            acc *= d
        args = (self.storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict())
        return (_rebuild_tensor_v2, args)


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
        return None


numel = 1
for d in dims:
    numel *= d
buf = io.BytesIO()
Pickler(buf, protocol=2).dump(collections.OrderedDict({name: Tensor(Storage("0", numel), dims)}))
with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
    z.writestr("archive/data.pkl", buf.getvalue())
    z.writestr("archive/data/0", b"\0" * 16)
    z.writestr("archive/version", "3\n")
