"""studies.precision: the bit-serial run-time precision trade-off (PrecisionBatching) next to VS-Quant."""
import pytest

from studies.precision import format_table, main, precision_table


def test_digits_cnn_trade_off():
    df = precision_table(["digits-cnn"], ks=(8, 4))
    rows = {(r.k, r.scheme): r for r in df.itertuples()}
    base = rows[(8, "parallel 8/8/-/-")]
    full = rows[(8, "bit-serial top-k of 8/8/-/-")]
    assert base.cycles_vs_base == 1 and base.energy_vs_base == 1
    assert full.accuracy == base.accuracy            # all planes: the parallel datapath's outputs
    top4 = rows[(4, "bit-serial top-k of 8/8/-/-")]
    mid4 = rows[(4, "bit-serial top-k of 8/8/-/- + midpoint")]
    vs4 = rows[(4, "VS-Quant k/8/6/- bit-serial")]
    # fewer planes: fewer cycles and less energy on the same stored weights; truncation costs accuracy
    assert top4.cycles < full.cycles and top4.fj_per_op < full.fj_per_op
    assert top4.accuracy < full.accuracy
    assert mid4.accuracy > top4.accuracy and mid4.cycles == top4.cycles
    assert vs4.accuracy > top4.accuracy
    text = format_table(df)
    assert "digits-cnn: top-1 accuracy" in text and "VS-Quant k/8/6/- parallel" in text


def test_cli_refuses_bad_planes(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--planes", "9"])
    assert e.value.code == 2 and "--planes" in capsys.readouterr().err
