#!/usr/bin/env python3
"""Writes the seed corpora of the loader fuzzers (tests/fuzz/corpus/<harness>/): small valid
files and broken or hostile variants. Pure Python, no torch: torch-style pickles are written
opcode by opcode. The corpus is committed; rerun this only to regenerate it."""
import io, json, os, pickle, struct, sys, zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'corpus')


def put(harness, name, data):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


# ---- safetensors --------------------------------------------------------------------------
def st(header, data=b'', hlen=None):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack('<Q', len(h) if hlen is None else hlen) + h + data


def safetensors():
    a = {'dtype': 'F32', 'shape': [2, 2], 'data_offsets': [0, 16]}
    b = {'dtype': 'BF16', 'shape': [3], 'data_offsets': [16, 22]}
    data = struct.pack('<4f', 1, -2, 3.5, .25) + b'\x80\x3f\x00\x40\x40\x40'
    put('safetensors', 'valid.safetensors', st({'__metadata__': {'format': 'pt'}, 'a': a, 'b': b}, data))
    put('safetensors', 'valid-empty-and-scalar.safetensors',
        st({'e': {'dtype': 'F16', 'shape': [0, 4], 'data_offsets': [0, 0]},
            's': {'dtype': 'I64', 'shape': [], 'data_offsets': [0, 8]},
            'f': {'dtype': 'F8_E4M3', 'shape': [2, 2], 'data_offsets': [8, 12]}}, bytes(range(12))))
    put('safetensors', 'hlen-huge.safetensors', st({'a': a}, data, hlen=1 << 40))
    put('safetensors', 'hlen-past-end.safetensors', st({'a': a}, data, hlen=500))
    put('safetensors', 'truncated.safetensors', st({'a': a, 'b': b}, data)[:-7])
    put('safetensors', 'outside.safetensors', st({'a': {**a, 'data_offsets': [0, 4096]}}, data))
    put('safetensors', 'overlap.safetensors', st({'a': a, 'b': {**b, 'data_offsets': [10, 16]}}, data))
    put('safetensors', 'wrong-bytes.safetensors', st({'a': {**a, 'data_offsets': [0, 12]}}, data))
    put('safetensors', 'bad-json.safetensors', st(b'{"a": {"dtype": "F32", "shape": [2,', data))
    put('safetensors', 'bad-dtype.safetensors', st({'a': {**a, 'dtype': 'Q4_K'}}, data))
    put('safetensors', 'dtype-number.safetensors', st({'a': {**a, 'dtype': 7}}, data))
    put('safetensors', 'shape-overflow.safetensors', st({'a': {**a, 'shape': [1 << 32, 1 << 32, 1 << 32]}}, data))
    put('safetensors', 'deep.safetensors', st(b'{"a":' + b'[' * 40 + b']' * 40 + b'}'))
    put('safetensors', 'not-utf8.safetensors', st(b'{"\xff\xfe":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', data))


# ---- pickles (torch.save style, written by hand) --------------------------------------------
class P:
    def __init__(self, proto=2):
        self.b = bytearray(b'\x80' + bytes([proto]))

    def op(self, *codes):
        for c in codes:
            self.b += c if isinstance(c, bytes) else bytes([c])
        return self

    def s(self, text):
        t = text.encode()
        return self.op(b'X', struct.pack('<I', len(t)), t)

    def i(self, v):
        if 0 <= v < 256:
            return self.op(b'K', bytes([v]))
        return self.op(b'J', struct.pack('<i', v))

    def g(self, mod, name):
        return self.op(b'c', f'{mod}\n{name}\n'.encode())

    def ints(self, vals):
        self.op(b'(')
        for v in vals:
            self.i(v)
        return self.op(b't')

    def od(self):
        return self.g('collections', 'OrderedDict').op(b')R')

    def tensor_v2(self, storage, key, numel, offset, shape, stride):
        self.g('torch._utils', '_rebuild_tensor_v2').op(b'((')
        self.s('storage').g('torch', storage).s(key).s('cpu').i(numel).op(b'tQ')
        self.i(offset).ints(shape).ints(stride).op(b'\x89')
        return self.od().op(b'tR')

    def tensor_v3(self, key, nbytes, shape, stride, dtype):
        self.g('torch._utils', '_rebuild_tensor_v3').op(b'((')
        self.s('storage').g('torch', 'UntypedStorage').s(key).s('cpu').i(nbytes).op(b'tQ')
        self.i(0).ints(shape).ints(stride).op(b'\x89')
        return self.od().g('torch', dtype).op(b'tR')

    def bytes(self):
        return bytes(self.b + b'.')


def state_dict_pickle():
    p = P().op(b'}q\x00(').s('module').od().op(b'(')
    p.s('blocks.0.weight').tensor_v2('BFloat16Storage', '0', 32, 0, [4, 8], [8, 1])
    p.s('blocks.0.bias').tensor_v2('FloatStorage', '1', 16, 4, [4], [1])
    p.s('blocks.1.weight').g('torch._utils', '_rebuild_parameter').op(b'(')
    p.tensor_v3('2', 64, [8, 8], [8, 1], 'float8_e4m3fn').op(b'\x88').od().op(b'tR')
    p.s('scale').tensor_v2('FloatStorage', '3', 1, 0, [], [])
    p.op(b'u}').s('_metadata').op(b'}sb')        # BUILD with the state dict's _metadata
    p.s('step').i(10).op(b'u')
    return p.bytes()


class Evil:
    """pickles as a call of `fn(arg)`: what a malicious checkpoint contains"""
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


def pickles():
    put('pickle', 'state-dict.pkl', state_dict_pickle())
    flat = P().op(b'}(').s('w').tensor_v2('HalfStorage', '0', 4, 0, [2, 2], [2, 1]).op(b'u')
    put('pickle', 'flat.pkl', flat.bytes())
    put('pickle', 'stack-global.pkl',
        P(4).op(b'\x95', struct.pack('<Q', 0), b'}\x94').s('a').s('torch._utils').s('_rebuild_tensor_v2')
        .op(b'\x93\x94((').s('storage').s('torch').s('FloatStorage').op(b'\x93').s('0').s('cpu').i(4)
        .op(b'tQ').i(0).ints([4]).ints([1]).op(b'\x89').od().op(b'tRs').bytes())
    import os as _os, builtins as _b
    put('pickle', 'hostile-system.pkl', pickle.dumps(Evil(_os.system, 'echo pwned'), protocol=2))
    put('pickle', 'hostile-eval.pkl', pickle.dumps(Evil(_b.eval, '1+1'), protocol=4))
    put('pickle', 'memo-huge.pkl', P().op(b'}r', struct.pack('<I', 0xFFFFFFFF)).bytes())
    put('pickle', 'deep-marks.pkl', P().op(b'(' * 5000).bytes())
    put('pickle', 'cycle.pkl', P().op(b'}q\x00').s('x').op(b'h\x00s').bytes())
    put('pickle', 'truncated.pkl', state_dict_pickle()[:200])
    put('pickle', 'non-contiguous.pkl',
        P().op(b'}(').s('w').tensor_v2('FloatStorage', '0', 6, 0, [2, 3], [1, 2]).op(b'u').bytes())


# ---- whole torch archives ------------------------------------------------------------------
def archive(pkl, storages, compress=False, prefix='archive'):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        z.writestr(f'{prefix}/data.pkl', pkl)
        z.writestr(f'{prefix}/byteorder', 'little')
        for i, s in enumerate(storages):
            z.writestr(f'{prefix}/data/{i}', s)
        z.writestr(f'{prefix}/version', '3\n')
    return buf.getvalue()


def archives():
    st = [bytes(range(64)), bytes(range(64)), bytes(range(64)), bytes(range(64))]
    good = archive(state_dict_pickle(), st)
    put('pt', 'valid.pt', good)
    put('pt', 'truncated.pt', good[:len(good) // 2])
    put('pt', 'compressed.pt', archive(state_dict_pickle(), st, compress=True))
    import os as _os
    put('pt', 'hostile-system.pt', archive(pickle.dumps(Evil(_os.system, 'echo pwned'), protocol=2), []))
    put('pt', 'storage-missing.pt', archive(state_dict_pickle(), st[:1]))
    cd = good.rfind(b'PK\x01\x02')
    put('pt', 'bad-central-dir.pt', good[:cd + 4] + b'\xff' * 20 + good[cd + 24:])


if __name__ == '__main__':
    safetensors()
    pickles()
    archives()
    print('corpus written to', OUT)
