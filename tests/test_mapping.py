"""mapping.capture / mapping.lower / mapping.interpret and workloads.models.

Counting tests (BERT-base at seq 128, ResNet50 at 224) only capture and lower (trace + one
shape-propagation forward); everything that runs the interpreter uses small models.
"""

import networkx as nx
import numpy as np
import pytest

from _models import need_model  # skip without the weights, fail in CI

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import vsquant  # noqa: E402
from mapping.backends import float_backend, reference_backend  # noqa: E402
from mapping.capture import capture, export_graph  # noqa: E402
from mapping.interpret import QuantInterpreter  # noqa: E402
from mapping.lower import UnsupportedOpError, lower  # noqa: E402
from workloads.models import WORKLOADS, get_workload  # noqa: E402

TINY_BERT = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def _cos(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64).flatten(), torch.as_tensor(b, dtype=torch.float64).flatten()
    return float(a @ b / (a.norm() * b.norm()))


def _lowered(name, **opts):
    model, inputs, info = get_workload(name, **opts)
    cap = capture(model, inputs)
    return cap, lower(cap), info


# ------------------------------------------------------------------------- (a) BERT-base counts

@pytest.fixture(scope="module")
def bert_base():
    return _lowered("bert-base", seq=128, batch=1)


def test_bert_base_mac_layers(bert_base):
    cap, low, _ = bert_base
    assert cap.method == "export" and "symbolic_trace" in cap.fallback_reason  # HF models: torch.export
    # 12 encoder layers x (Q, K, V, O, FFN1, FFN2, QK^T, AV), plus the pooler's dense layer on the
    # [CLS] token (BertModel has a pooler; it is one more linear with M = batch)
    assert low.mac_layer_count == 12 * 8 + 1
    kinds = [layer.kind for layer in low.layers]
    assert kinds.count("linear") == 12 * 6 + 1 and kinds.count("matmul") == 12 * 2
    names = [layer.name for layer in low.layers]
    assert names[:3] == [f"encoder.layer.0.attention.self.{p}" for p in ("query", "key", "value")]
    assert names[-1] == "pooler.dense" and low.layers[-1].M == 1
    qk, av = low.layers[3], low.layers[4]
    assert (qk.M, qk.K, qk.N, qk.batch, len(qk.gemms)) == (128, 64, 128, (1, 12), 12)   # Q (64 per head) . K^T
    assert (av.M, av.K, av.N, av.batch) == (128, 128, 64, (1, 12))                       # P . V
    ffn1 = low.layer("encoder.layer.0.intermediate.dense")
    assert (ffn1.M, ffn1.K, ffn1.N, ffn1.has_bias) == (128, 768, 3072, True)


def test_bert_base_total_macs(bert_base):
    _, low, info = bert_base
    L, S, H, FF, B = 12, 128, 768, 3072, 1
    # per layer: Q, K, V, O (S*H*H each) + FFN1, FFN2 (S*H*FF each) + QK^T and AV (S*S*H each, over all heads)
    per_layer = 4 * S * H * H + 2 * S * H * FF + 2 * S * S * H
    expected = B * (L * per_layer + H * H)   # + pooler dense on one token per sequence
    assert low.total_macs == expected == 11_174_215_680
    table = low.table
    assert set(table["where"]) <= {"mac", "ppu", "host", "layout", "io"}
    assert (table["where"] == "mac").sum() == 12 * 8 + 1
    assert table.loc[table["op"] == "softmax", "where"].eq("host").all()
    assert table.loc[table["op"] == "gelu", "where"].eq("ppu").all()
    assert table.loc[table["op"] == "layer_norm", "where"].eq("host").all()
    assert table["macs"].sum() == low.total_macs


# ------------------------------------------------------------------------- (b) ResNet50 counts

def test_resnet50_macs_and_first_conv():
    cap, low, _ = _lowered("resnet50")
    assert cap.method == "fx" and cap.fallback_reason is None
    assert low.mac_layer_count == 53 + 1   # 53 convs (incl. 4 downsample 1x1) + fc
    assert abs(low.total_macs - 4.09e9) / 4.09e9 < 0.01
    first = low.layers[0]
    assert (first.name, first.kind, first.M, first.K, first.N) == ("conv1", "conv2d", 112 * 112, 3 * 7 * 7, 64)
    assert (first.stride, first.padding, first.has_bias) == ((2, 2), (3, 3), False)
    fc = low.layers[-1]
    assert (fc.name, fc.kind, fc.M, fc.K, fc.N) == ("fc", "linear", 1, 2048, 1000)
    table = low.table
    assert table.loc[table["op"] == "batch_norm", "where"].eq("ppu").all()
    assert table.loc[table["op"] == "max_pool2d", "where"].eq("host").all()
    assert cap.node("layer1_0_conv2")["shape"] == (1, 64, 56, 56)


# ------------------------------------------------------------------------- (c) other models

@pytest.fixture(scope="module")
def minilm():
    return need_model(get_workload, "minilm", batch=4)


@pytest.mark.models
def test_minilm_captures_and_lowers(minilm):
    model, inputs, info = minilm
    cap = capture(model, inputs)
    low = lower(cap)
    assert cap.method == "export"
    assert low.mac_layer_count == 6 * 8 + 1
    S, H, FF, B = info["seq"], 384, 1536, 4
    assert low.total_macs == B * (6 * (4 * S * H * H + 2 * S * H * FF + 2 * S * S * H) + H * H)
    assert len(info["sentences"]) == 4


@pytest.mark.models
def test_minilm_float_backend_matches_model(minilm):
    model, inputs, _ = minilm
    out = QuantInterpreter(capture(model, inputs), float_backend).forward()
    ref = _double_copy(model)(**inputs)
    assert torch.allclose(out.last_hidden_state, ref.last_hidden_state, atol=1e-10, rtol=0)


def _double_copy(model):
    import copy
    return copy.deepcopy(model).double().eval()


def test_mpnet_captures_lowers_and_runs():
    cfg = transformers.MPNetConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64)
    torch.manual_seed(0)
    model = transformers.MPNetModel(cfg).eval()
    ids = torch.randint(5, 100, (2, 9))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    cap = capture(model, inputs)
    low = lower(cap)
    assert cap.method == "export"
    assert low.mac_layer_count == 2 * 8 + 1
    table = low.table
    assert table.loc[table["op"] == "log", "where"].eq("host").all()   # relative position buckets
    out = QuantInterpreter(cap, float_backend).forward()
    ref = _double_copy(model)(**inputs)
    assert torch.allclose(out.last_hidden_state, ref.last_hidden_state, atol=1e-10, rtol=0)


USER_MODULE = '''
import torch, torch.nn as nn, torch.nn.functional as F

class Net(nn.Module):
    """grouped conv, functional conv, bmm, addmm with a parameter, fused attention, F.linear"""
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4)
        self.w = nn.Parameter(torch.randn(6, 16) / 4)
        self.wf = nn.Parameter(torch.randn(16, 8, 1, 1) / 3)
        self.b = nn.Parameter(torch.randn(6))
        self.proj = nn.Linear(6, 12)

    def forward(self, x):
        y = F.relu(self.conv(x))                        # (2, 16, 4, 4)
        y = y + F.conv2d(x[:, :, ::2, ::2], self.wf)    # (2, 16, 4, 4)
        t = y.flatten(2).transpose(1, 2)                # (2, 16, 16) tokens x channels
        g = torch.bmm(t, t.transpose(1, 2)) / 16        # (2, 16, 16), both operands activations
        h = torch.addmm(self.b, g.reshape(-1, 16), self.w.t())    # (32, 6), a static weight
        q = self.proj(h).reshape(2, 16, 2, 6).transpose(1, 2)    # (2, 2, 16, 6)
        a = F.scaled_dot_product_attention(q, q, q, is_causal=True)
        return F.linear(a.mean(2), self.w.t())

def make(seed=0):
    torch.manual_seed(seed)
    return Net().eval(), (torch.randn(2, 8, 8, 8),)
'''


@pytest.fixture(scope="module")
def user_workload(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "net.py"
    path.write_text(USER_MODULE)
    return path


def test_user_module_captures_lowers_and_runs(user_workload):
    model, inputs, info = get_workload(f"module:{user_workload}:make", seed=1)
    assert info["family"] == "user" and not model.training
    cap = capture(model, inputs)
    assert cap.method == "fx"
    low = lower(cap)
    by_op = {layer.op: layer for layer in low.layers}
    conv = low.layer("conv")
    # grouped conv: M = B*Ho*Wo, K = Cin/groups*R*S, N = Cout, 4 GEMMs of N = Cout/groups
    assert (conv.M, conv.K, conv.N, conv.groups) == (2 * 4 * 4, 2 * 3 * 3, 16, 4)
    assert conv.gemms == ((32, 18, 4),) * 4 and conv.macs == 32 * 18 * 16
    fconv = [layer for layer in low.layers if layer.kind == "conv2d" and layer.name != "conv"][0]
    assert (fconv.M, fconv.K, fconv.N, fconv.has_bias) == (32, 8, 16, False)
    assert (by_op["matmul"].kind, by_op["matmul"].batch, by_op["matmul"].macs) == ("matmul", (2,), 2 * 16 * 16 * 16)
    addmm = by_op["addmm"]   # a parameter on the right: a linear layer with that weight
    assert (addmm.kind, addmm.M, addmm.K, addmm.N, addmm.has_bias) == ("linear", 32, 16, 6, True)
    qk, av = by_op["sdpa.qk"], by_op["sdpa.av"]
    assert (qk.M, qk.K, qk.N, qk.batch) == (16, 6, 16, (2, 2)) and (av.M, av.K, av.N) == (16, 16, 6)
    assert low.mac_layer_count == 8   # conv, F.conv2d, bmm, addmm, proj, QK^T, AV, F.linear
    interp = QuantInterpreter(cap, float_backend)
    out = interp.forward()
    ref = _double_copy(model)(inputs[0].double())
    assert torch.allclose(out, ref, atol=1e-10, rtol=0)
    assert set(interp.layer_outputs) == {layer.name for layer in low.layers}
    # another input of the same structure
    x2 = torch.randn(2, 8, 8, 8)
    assert torch.allclose(interp.forward((x2,)), _double_copy(model)(x2.double()), atol=1e-10, rtol=0)


class MatmulSpellings(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 5))
        self.b = nn.Parameter(torch.randn(5))

    def forward(self, x, y):                                          # x (3, 4, 6), y (3, 6, 4)
        h = x @ self.w                                                # static weight: linear
        g = torch.baddbmm(h[:, :, :4], x, y, beta=0.5, alpha=0.25)    # (3, 4, 4)
        m = torch.addmm(self.b, mat1=g.reshape(12, 4), mat2=h[0, :, :].reshape(4, 5))
        return torch.mm(m, m.t())


@pytest.mark.parametrize("method", ["fx", "export"])
def test_matmul_spellings(method):
    torch.manual_seed(0)
    model, x, y = MatmulSpellings().eval(), torch.randn(3, 4, 6), torch.randn(3, 6, 4)
    cap = capture(model, (x, y), method=method)
    low = lower(cap)
    assert [(layer.kind, layer.M, layer.K, layer.N) for layer in low.layers] == [
        ("linear", 12, 6, 5), ("matmul", 4, 6, 4), ("matmul", 12, 4, 5), ("matmul", 12, 5, 12)]
    assert [layer.has_bias for layer in low.layers] == [False, True, True, False]
    out = QuantInterpreter(cap, float_backend).forward()
    assert torch.allclose(out, _double_copy(model)(x.double(), y.double()), atol=1e-10, rtol=0)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x, twice=False):
        return self.b(self.a(x)) if twice else self.a(x)


@pytest.mark.parametrize("method", ["fx", "export"])
def test_concrete_args(method):
    model, x = Branchy().eval(), torch.randn(2, 4)
    cap = capture(model, (x,), concrete_args={"twice": True}, method=method)
    assert [layer.name for layer in lower(cap).layers] == ["a", "b"]
    interp = QuantInterpreter(cap, float_backend)
    for out in (interp.forward(), interp.forward((x,))):
        assert torch.allclose(out, _double_copy(model)(x.double(), twice=True), atol=1e-12, rtol=0)


# ------------------------------------------------------------------------- (d) unknown ops

class Erfinv(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(torch.erfinv(torch.tanh(x)))


@pytest.mark.parametrize("method", ["fx", "export"])
def test_unknown_op_raises_naming_node_and_op(method):
    model, x = Erfinv().eval(), torch.randn(3, 4)
    cap = capture(model, (x,), method=method)
    with pytest.raises(UnsupportedOpError, match=r"node 'erfinv'.*op 'erfinv'.*on_unknown='host'") as e:
        lower(cap)
    assert e.value.node == "erfinv" and e.value.op == "erfinv"
    low = lower(cap, on_unknown="host")
    row = low.table.set_index("node").loc["erfinv"]
    assert row["where"] == "host" and low.mac_layer_count == 1
    out = QuantInterpreter(cap, float_backend, on_unknown="host").forward()
    assert torch.allclose(out, _double_copy(model)(x.double()), atol=1e-12, rtol=0)
    with pytest.raises(UnsupportedOpError):
        QuantInterpreter(cap, float_backend)


def test_lower_rejects_bad_on_unknown():
    cap = capture(nn.Linear(2, 2).eval(), (torch.randn(1, 2),))
    with pytest.raises(ValueError, match="on_unknown"):
        lower(cap, on_unknown="ignore")


# ------------------------------------------------------------------------- (e) float backend

@pytest.fixture(scope="module", params=["eager", "sdpa"])
def tiny_bert(request):
    model, inputs, info = get_workload("bert-base", seq=8, batch=2, config=TINY_BERT, attention=request.param)
    inputs["attention_mask"][1, 5:] = 0   # padding in the second sequence
    return model, inputs, capture(model, inputs)


def test_float_backend_reproduces_tiny_bert(tiny_bert):
    model, inputs, cap = tiny_bert
    interp = QuantInterpreter(cap, float_backend)
    assert interp.lowered.mac_layer_count == 2 * 8 + 1
    out = interp.forward()
    ref = _double_copy(model)(**inputs)
    for key in ("last_hidden_state", "pooler_output"):
        assert out[key].dtype == torch.float64
        assert torch.allclose(out[key], ref[key], atol=1e-10, rtol=0), key
    assert next(model.parameters()).dtype == torch.float32   # the user's model is left as it was


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding="same", groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = x + F.relu6(self.pw(self.dw(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@pytest.fixture(scope="module")
def tiny_cnn():
    torch.manual_seed(3)
    model = TinyCNN().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 16, 16)
    return model, x, capture(model, (x,))


def test_float_backend_reproduces_tiny_cnn(tiny_cnn):
    model, x, cap = tiny_cnn
    interp = QuantInterpreter(cap, float_backend)
    assert [layer.name for layer in interp.lowered.layers] == ["stem", "dw", "pw", "fc"]
    assert interp.lowered.layer("dw").gemms == ((2 * 8 * 8, 9, 1),) * 8 and interp.lowered.layer("dw").padding == (1, 1)
    out = interp.forward()
    assert torch.allclose(out, _double_copy(model)(x.double()), atol=1e-10, rtol=0)


# ------------------------------------------------------------------------- (f) reference backend

def test_reference_backend_tiny_bert_close_to_float(tiny_bert):
    model, inputs, cap = tiny_bert
    ref_run = QuantInterpreter(cap, float_backend)
    ref = ref_run.forward()
    q_run = QuantInterpreter(cap, reference_backend("8/8/-/-"))
    out = q_run.forward()
    assert _cos(out["last_hidden_state"], ref["last_hidden_state"]) > 0.99
    assert not torch.equal(out["last_hidden_state"], ref["last_hidden_state"])   # really quantized
    names = [layer.name for layer in q_run.lowered.layers]
    assert list(q_run.layer_outputs) == names == list(ref_run.layer_outputs)
    for name in names:   # layer by layer
        assert q_run.layer_outputs[name].shape == ref_run.layer_outputs[name].shape
        assert _cos(q_run.layer_outputs[name], ref_run.layer_outputs[name]) > 0.99, name


def test_reference_backend_first_conv_is_the_vsquant_layer(tiny_cnn):
    model, x, cap = tiny_cnn
    interp = QuantInterpreter(cap, reference_backend("4/8/4/6"))
    interp.forward()
    w = model.stem.weight.detach().double().numpy()
    expected = vsquant.conv2d(x.double().numpy(), w, None, "4/8/4/6", stride=2, padding=1).output
    np.testing.assert_array_equal(interp.layer_outputs["stem"].numpy(), expected)
    assert reference_backend("4/8/4/6").__name__ == "reference_backend(4/8/4/6)"


# ------------------------------------------------------------------------- (g) graph export

@pytest.mark.parametrize("suffix", [".graphml", ".json"])
def test_export_graph_writes_a_readable_file(tiny_cnn, tmp_path, suffix):
    _, _, cap = tiny_cnn
    low = lower(cap)
    where = {row.node: {"where": row.where} for row in low.table.itertuples()}
    path = export_graph(cap, tmp_path / f"tiny_cnn{suffix}", extra=where)
    if suffix == ".graphml":
        g = nx.read_graphml(path)
    else:
        import json
        g = nx.node_link_graph(json.loads(path.read_text()), edges="edges")
    assert g.number_of_nodes() == cap.graph.number_of_nodes()
    assert g.number_of_edges() == cap.graph.number_of_edges()
    assert g.nodes["stem"]["op"] == "conv2d" and g.nodes["stem"]["shape"] == "2x8x8x8"
    assert g.nodes["stem"]["where"] == "mac" and g.nodes["bn"]["where"] == "ppu"
    assert g.has_edge("stem", "bn")
    with pytest.raises(ValueError, match="graphml"):
        export_graph(cap, tmp_path / "graph.txt")


# ------------------------------------------------------------------------- (h) registry

def test_workload_registry_errors(tmp_path):
    assert {"bert-base", "bert-large", "minilm", "resnet50"} <= set(WORKLOADS)
    with pytest.raises(ValueError, match=r"unknown workload 'bert-huge'.*bert-base.*resnet50.*module:"):
        get_workload("bert-huge")
    with pytest.raises(ValueError, match=r"no option 'sequence'.*seq"):
        get_workload("bert-base", sequence=8)
    with pytest.raises(ValueError, match="seq must be"):
        get_workload("bert-base", seq=1000, config=TINY_BERT)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        get_workload(f"module:{tmp_path / 'missing.py'}:make")
    (tmp_path / "m.py").write_text("import torch\ndef build():\n    return torch.nn.Linear(2, 2)\n")
    with pytest.raises(ValueError, match=r"no function 'make'.*build"):
        get_workload(f"module:{tmp_path / 'm.py'}:make")
    with pytest.raises(TypeError, match="example_inputs"):
        get_workload(f"module:{tmp_path / 'm.py'}:build")
    with pytest.raises(ValueError, match="path/to/file.py:factory"):
        get_workload(f"module:{tmp_path / 'm.py'}")


def test_workload_forms():
    model, inputs, info = get_workload("gemm:8x32x16")
    low = lower(capture(model, inputs))
    assert [(layer.M, layer.K, layer.N) for layer in low.layers] == [(8, 32, 16)] and info["macs"] == 8 * 32 * 16
    model, inputs, info = get_workload("resnet18", image=64)
    low = lower(capture(model, inputs))
    assert low.mac_layer_count == 21 and info["family"] == "cnn"
    _, inputs, info = get_workload("bert-large", seq=4, config=TINY_BERT)
    assert inputs["input_ids"].shape == (1, 4) and info["layers"] == 2
