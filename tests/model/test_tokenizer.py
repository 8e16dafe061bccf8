"""The tokenizer: train-only vocabulary, roll-up of rare codes, value bins, time gaps, round trip."""

from __future__ import annotations

import pytest

from clinfm import schema
from clinfm.data.store import SubjectDatabase
from clinfm.model.tokenizer import ClinicalTokenizer, age_token, time_token


@pytest.fixture(scope="module")
def db(tiny_meds, tmp_path_factory):
    return SubjectDatabase(tiny_meds, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tok(db):
    return ClinicalTokenizer(min_count=2, n_value_bins=4).fit(db)


def test_time_and_age_tokens():
    assert time_token(1) == "TIME//5m" and time_token(70) == "TIME//1h" and time_token(60 * 24) == "TIME//1d"
    assert time_token(60 * 24 * 365 * 40) == "TIME//5y+"
    assert age_token(42.9) == "AGE//40-44" and age_token(95) == "AGE//90+" and age_token(None) == "AGE//UNKNOWN"


def test_vocabulary_comes_from_train_and_rare_codes_roll_up(tok):
    assert "SNOMED//999999" not in tok.vocab_  # only held-out subjects have it
    assert tok.code_id("SNOMED//999999") == tok.unk_id
    assert "ICD10CM//I50.1" not in tok.vocab_ and "ICD10CM//I50" in tok.vocab_
    assert tok.vocab_[tok.code_id("ICD10CM//I50.1")] == "ICD10CM//I50"
    assert tok.vocab_[tok.code_id("ICD10CM//I50.77")] == "ICD10CM//I50"  # unseen child: nearest ancestor
    assert "RACE//white" not in tok.vocab_ and "MEDS_BIRTH" not in tok.vocab_
    assert len(tok.value_bins_["LOINC//2160-0"]) == 3  # quartile edges


def test_round_trip_encode_decode(db, tok):
    sid = 14  # a death (14 % 7 == 0), labs, two visit types' worth of events
    subject = db[sid]
    ids = tok.transform(subject)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    decoded = tok.decode(ids)
    assert decoded[0].code == "GENDER//M" and decoded[1].code.startswith("AGE//")
    events = [e for e in subject.events if e.time is not None and e.code != schema.BIRTH]
    death_at = next(i for i, e in enumerate(events) if e.code == schema.DEATH)
    events = events[: death_at + 1]  # death is terminal: the drug after it is dropped
    body = decoded[2:]
    assert [d.code for d in body] == [tok.vocab_[tok.code_id(e.code)] for e in events]
    first = events[0].time
    for d, e in zip(body, events):
        if e.numeric_value is not None:
            lo, hi = d.value_range
            assert lo <= e.numeric_value < hi and d.value_bin == tok.value_bin(e.code, e.numeric_value)
        else:
            assert d.value_bin is None
        true = (e.time - first).total_seconds() / 60
        assert (d.elapsed.total_seconds() / 60 == 0) == (true == 0)
        if true:  # each gap is rounded to its bin: within a factor of ~2.5 of the truth
            assert 0.3 < d.elapsed.total_seconds() / 60 / true < 3
    assert body[-1].code == schema.DEATH


def test_until_cuts_history_and_max_len_keeps_prefix(db, tok):
    subject = db[3]
    timed = [e for e in subject.events if e.time is not None]
    cut = timed[5].time
    ids = tok.transform(subject, until=cut)
    assert tok.eos_id not in ids  # a cut record is not complete
    assert len(tok.decode(ids)) - 2 == sum(1 for e in timed if e.time <= cut and e.code != schema.BIRTH)
    short = tok.transform(subject, max_len=10)
    assert len(short) == 10 and short[:2] == tok.transform(subject)[:2]


def test_save_load_gives_the_same_tokens(db, tok, tmp_path):
    tok.save(tmp_path / "tok.json")
    again = ClinicalTokenizer.load(tmp_path / "tok.json")
    for sid in (1, 5, 14, 36):
        assert again.transform(db[sid]) == tok.transform(db[sid]) == tok.transform(db.table(sid))
    assert again.vocab_ == tok.vocab_


def test_stats_and_unfitted_error(db, tok):
    stats = tok.describe(db, [36, 37, 38])
    assert stats.vocab_size == tok.vocab_size and stats.subjects == 3
    assert 0 < stats.unk_share < 0.2 and stats.tokens_p95 >= stats.tokens_median > 0
    with pytest.raises(RuntimeError, match="not fitted"):
        ClinicalTokenizer().transform(db[1])


def test_fits_eunomia(eunomia_meds, tmp_path):
    db = SubjectDatabase(eunomia_meds, cache_dir=tmp_path / "cache")
    tok = ClinicalTokenizer(min_count=5).fit(db)
    sid = next(iter(db))
    ids = tok.transform(db[sid])
    codes = [d.code for d in tok.decode(ids)][2:]
    expected = [tok.vocab_[tok.code_id(e.code)] for e in db[sid].events if e.time and e.code != schema.BIRTH]
    assert codes == expected and tok.vocab_size > 100


def test_fused_code_and_value_tokens_round_trip(db, tok, tiny_meds, tmp_path):
    fused = ClinicalTokenizer(min_count=2, n_value_bins=4, fused_values=True).fit(tiny_meds)
    assert fused.vocab_[: len(tok.vocab_)] == tok.vocab_  # the fused tokens come after the plain vocabulary
    assert "LOINC//2160-0|Q0" in fused.token_to_id_ and "LOINC//2160-0|Q3" in fused.token_to_id_
    for sid in (3, 12, 20):
        plain_ids, fused_ids = tok.transform(db.table(sid)), fused.transform(db.table(sid))
        n_values = sum(fused.vocab_[i].startswith("LOINC//2160-0|Q") for i in fused_ids)
        assert n_values > 0 and len(fused_ids) == len(plain_ids) - n_values  # one position per valued event
        assert not any(fused.token_kinds()[i] == 1 for i in fused_ids)  # no separate bin tokens
        assert fused.decode(fused_ids) == tok.decode(plain_ids)  # same codes, bins, value ranges and times
    fused.save(tmp_path / "tok.json")
    again = ClinicalTokenizer.load(tmp_path / "tok.json")
    assert again.fused_values and again.transform(db.table(3)) == fused.transform(db.table(3))
