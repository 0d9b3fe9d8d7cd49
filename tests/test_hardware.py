"""HardwareSpec / PESpec: presets load, derived numbers are right, bad input says what is wrong."""
import dataclasses
import pickle

import pytest
import yaml

from tlm.hardware import DEFAULT_PRESET, HardwareSpec, PESpec, list_presets, load_hardware

PRESETS = ["magnet16", "simba", "tiny"]


def _tiny_dict():
    return load_hardware("tiny").to_dict()


# -- presets ------------------------------------------------------------------------------


def test_list_presets_has_the_bundled_ones():
    assert set(PRESETS) <= set(list_presets())
    assert list_presets() == sorted(list_presets())


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_loads_and_names_its_sources(name):
    hw = load_hardware(name)
    assert isinstance(hw, HardwareSpec) and isinstance(hw.pe, PESpec)
    assert hw.name == name
    assert hw.sources, "every preset says what its numbers are modeled on"
    assert all(isinstance(v, str) and v for v in hw.sources.values())
    assert hw.technology_nm == 16


def test_default_preset_is_magnet16():
    assert DEFAULT_PRESET == "magnet16"
    assert load_hardware() == load_hardware("magnet16")


def test_magnet16_numbers():
    hw = load_hardware("magnet16")
    assert (hw.num_pes, hw.pe.lanes, hw.vector_size) == (16, 16, 16)
    assert hw.pe_macs_per_cycle == 256
    assert hw.macs_per_cycle == 16 * 16 * 16 == 4096
    assert hw.peak_ops_per_s == pytest.approx(2 * 4096 * hw.clock_hz)
    # Simba's buffers scaled to V=16 x 16 lanes: 32 KB x 4, 8 KB x 2, 64 KB x 2
    assert hw.pe.weight_buffer_bits == 128 * 1024 * 8
    assert hw.pe.activation_buffer_bits == 16 * 1024 * 8
    assert hw.global_buffer_bits == 128 * 1024 * 8
    assert hw.pe.accumulator_headroom_bits == 8
    assert hw.pe.max_accumulated_partial_sums == 256
    # every number of the default preset has a stated source
    assert {k for k in hw.to_dict() if k not in ("pe", "sources")} <= set(hw.sources)
    assert {f"pe.{k}" for k in hw.pe.to_dict()} <= set(hw.sources)


def test_simba_matches_its_published_peak():
    hw = load_hardware("simba")
    assert (hw.num_pes, hw.pe.lanes, hw.vector_size) == (16, 8, 8)
    assert hw.macs_per_cycle == 1024
    assert hw.pe.weight_buffer_bits == 32 * 1024 * 8
    assert hw.pe.activation_buffer_bits == 8 * 1024 * 8
    assert hw.global_buffer_bits == 64 * 1024 * 8
    # 3 KB accumulation buffer of 24-bit entries; 24 = 2*8 + log2(8) + headroom
    assert hw.pe.accumulation_collector_entries * 24 == 3 * 1024 * 8
    assert hw.pe.accumulator_bits(2 * 8 + 3) == 24
    # Zimmer et al., VLSI 2019: 4.01 TOPS peak for one chip
    assert hw.peak_tops == pytest.approx(4.01, rel=0.01)


def test_tiny_is_small():
    hw = load_hardware("tiny")
    assert (hw.num_pes, hw.pe.lanes, hw.vector_size) == (2, 2, 16)
    assert hw.macs_per_cycle == 64


# -- derived capacities ----------------------------------------------------------------------


def test_buffer_holds_more_vectors_at_lower_precision():
    hw = load_hardware("magnet16")
    # 4/8/6/10 stores 16x4 + 6 = 70 bits per weight vector; 8/8/-/- stores 16x8 = 128
    assert hw.weight_buffer_vectors(4, 6) > hw.weight_buffer_vectors(8, 0)
    assert hw.weight_buffer_vectors(4, 6) == (128 * 1024 * 8) // 70
    assert hw.weight_buffer_vectors(8, 0) == (128 * 1024 * 8) // 128 == 8192
    # activations: 8-bit with a 10-bit scale need more room than without
    assert hw.activation_buffer_vectors(8, 10) < hw.activation_buffer_vectors(8, 0)
    assert hw.activation_buffer_vectors(8, 10) == (16 * 1024 * 8) // (16 * 8 + 10)
    assert hw.activation_buffer_vectors(4, 6) > hw.activation_buffer_vectors(8, 0)


def test_vector_capacity_rejects_bad_bits():
    hw = load_hardware("tiny")
    with pytest.raises(ValueError, match="element_bits"):
        hw.weight_buffer_vectors(0, 4)
    with pytest.raises(ValueError, match="scale_bits"):
        hw.activation_buffer_vectors(8, -1)


# -- validation -----------------------------------------------------------------------------


def test_zero_pes_is_rejected_naming_field_and_range():
    with pytest.raises(ValueError, match=r"num_pes must be an integer >= 1, got 0"):
        load_hardware("tiny").with_(num_pes=0)


def test_negative_bandwidth_is_rejected():
    d = _tiny_dict()
    d["dram_bits_per_cycle"] = -64
    with pytest.raises(ValueError, match=r"dram_bits_per_cycle must be an integer >= 1, got -64"):
        HardwareSpec.from_dict(d)
    with pytest.raises(ValueError, match="noc_bits_per_cycle"):
        load_hardware("tiny").with_(noc_bits_per_cycle=-1)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"lanes": 0}, "pe.lanes"),
        ({"weight_buffer_bits": -8}, "pe.weight_buffer_bits"),
        ({"accumulator_headroom_bits": -1}, "pe.accumulator_headroom_bits"),
        ({"accumulator_headroom_bits": 99}, "pe.accumulator_headroom_bits"),
        ({"lanes": 2.5}, "pe.lanes"),
        ({"lanes": True}, "pe.lanes"),
        ({"vector_size": "16"}, "hardware.vector_size"),
        ({"clock_hz": 0}, "hardware.clock_hz"),
        ({"clock_hz": float("nan")}, "hardware.clock_hz"),
        ({"noc_multicast": 1}, "hardware.noc_multicast"),
        ({"dram_latency": -1}, "hardware.dram_latency"),
        ({"name": ""}, "hardware.name"),
    ],
)
def test_bad_values_name_the_field(change, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        load_hardware("tiny").with_(**change)


def test_zero_latency_is_allowed():
    hw = load_hardware("tiny").with_(dram_latency=0, noc_hop_latency=0)
    assert hw.dram_latency == 0 and hw.noc_hop_latency == 0


def test_unknown_key_lists_allowed_keys():
    d = _tiny_dict()
    d["num_pe"] = 4  # typo
    with pytest.raises(ValueError, match=r"unknown key\(s\) in hardware: 'num_pe'.*num_pes"):
        HardwareSpec.from_dict(d)
    d = _tiny_dict()
    d["pe"]["lane"] = 4
    with pytest.raises(ValueError, match=r"unknown key\(s\) in pe: 'lane'.*lanes"):
        HardwareSpec.from_dict(d)
    d = _tiny_dict()
    d["sources"]["num_pe"] = "typo"
    with pytest.raises(ValueError, match=r"hardware\.sources.*'num_pe'"):
        HardwareSpec.from_dict(d)
    with pytest.raises(ValueError, match=r"unknown key\(s\) in with_\(\): 'colck_hz'"):
        load_hardware("tiny").with_(colck_hz=1e9)


def test_missing_key_is_named():
    d = _tiny_dict()
    del d["noc_hop_latency"]
    with pytest.raises(ValueError, match=r"missing key\(s\) in hardware: noc_hop_latency"):
        HardwareSpec.from_dict(d)
    d = _tiny_dict()
    del d["pe"]["accumulator_headroom_bits"]  # optional, defaults to 8
    assert HardwareSpec.from_dict(d).pe.accumulator_headroom_bits == 8


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError) as err:
        load_hardware("magnet61")
    message = str(err.value)
    assert "magnet61" in message
    for name in PRESETS:
        assert name in message


def test_missing_yaml_path_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="Known presets: .*magnet16"):
        load_hardware(tmp_path / "nope.yaml")


# -- user YAML ------------------------------------------------------------------------------


def test_user_yaml_from_tmp_path(tmp_path):
    d = _tiny_dict()
    del d["name"]  # the file's stem names it
    d["num_pes"] = 4
    d["pe"]["lanes"] = 8
    d["clock_hz"] = "2e9"  # PyYAML reads 1e9 as a string; float fields accept it
    path = tmp_path / "my_chip.yaml"
    path.write_text(yaml.safe_dump(d))
    for arg in (path, str(path)):
        hw = load_hardware(arg)
        assert hw.name == "my_chip"
        assert hw.macs_per_cycle == 4 * 8 * 16
        assert hw.clock_hz == 2e9


def test_user_yaml_with_a_typo_names_the_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(load_hardware("tiny").to_yaml().replace("noc_multicast", "noc_multicasts"))
    with pytest.raises(ValueError, match=r"bad\.yaml.*'noc_multicasts'"):
        load_hardware(path)


def test_not_a_mapping_is_rejected(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_hardware(path)


# -- conversion, modification, value semantics -------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_to_dict_round_trip(name):
    hw = load_hardware(name)
    d = hw.to_dict()
    assert isinstance(d["pe"], dict) and isinstance(d["sources"], dict)
    assert HardwareSpec.from_dict(d) == hw
    assert HardwareSpec.from_dict(yaml.safe_load(yaml.safe_dump(d))) == hw
    assert HardwareSpec.from_dict(yaml.safe_load(hw.to_yaml())) == hw


def test_with_and_replace_pe():
    hw = load_hardware("magnet16")
    more = hw.with_(num_pes=32)
    assert more.num_pes == 32 and hw.num_pes == 16
    assert more.macs_per_cycle == 2 * hw.macs_per_cycle
    narrow = hw.replace_pe(lanes=8)
    assert narrow.pe.lanes == 8 and narrow.macs_per_cycle == 2048
    assert hw.with_(lanes=8) == narrow
    assert hw.with_(pe={"lanes": 8}) == narrow
    assert hw.with_(pe=narrow.pe) == narrow
    assert hw.with_(num_pes=32, lanes=8).macs_per_cycle == 32 * 8 * 16


def test_frozen_hashable_picklable():
    hw = load_hardware("magnet16")
    with pytest.raises(dataclasses.FrozenInstanceError):
        hw.num_pes = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        hw.pe.lanes = 3
    assert hash(hw) == hash(load_hardware("magnet16"))
    assert len({hw, load_hardware("magnet16"), load_hardware("tiny")}) == 2
    assert pickle.loads(pickle.dumps(hw)) == hw


def test_sources_are_copied_not_shared():
    src = {"num_pes": "mine"}
    hw = load_hardware("tiny").with_(sources=src)
    src["num_pes"] = "changed"
    assert hw.sources["num_pes"] == "mine"


def test_load_hardware_passes_a_spec_through_and_rejects_other_types():
    hw = load_hardware("tiny")
    assert load_hardware(hw) is hw
    with pytest.raises(TypeError):
        load_hardware(16)
