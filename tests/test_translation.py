"""Encoder-decoder translation: the step model against teacher forcing, greedy and beam search, attention
over padding, the grouped split, the tokenizers' round trip, the BLEU plumbing, and the shipped recipes on
the slice under tests/data (trained, evaluated, reloaded in a fresh process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import DATA, ROOT, build
from dlkit import tasks
from dlkit.data import pairs
from dlkit.data.spec import DataSpec
from dlkit.errors import RecipeError
from dlkit.models import decoding, seq2seq
from dlkit.tasks import text_translation
from dlkit.training.train import train

RECIPES = ["seq2seq_fra_eng", "attention_bahdanau_fra_eng", "attention_luong_fra_eng"]
SMALL = [f"data.dir={DATA}", "train.epochs=1", "model.units=[16]", "model.embedding_dim=8", "data.limit=400",
         "data.test_limit=40"]


def _model(write_recipe, attention: str, cell: str = "gru", bidirectional: bool = False, extra: str = ""):
    model = (f"{{arch: seq2seq, cell: {cell}, units: [6, 5], embedding_dim: 4, attention: {attention}, "
             f"bidirectional: {str(bidirectional).lower()} {extra}}}" if attention != "transformer" else
             "{arch: transformer_translator, layers: 2, d_model: 8, heads: 2, ff_units: 12}")
    recipe = tasks.load_recipe(write_recipe(f"name: tiny\ndata: {{dataset: tatoeba_fra_eng}}\nmodel: {model}\n"))
    spec = DataSpec(input_shape=(16,), modality="tokens", vocabulary_size=11, source_vocabulary_size=13,
                    target_shape=(7, 8))
    return recipe, build(recipe, spec, compile=False)


def _sources(rng, rows=3, length=7, lengths=(2, 5, 7)):
    src = np.zeros((rows, length), np.int32)
    for i, n in enumerate(lengths[:rows]):
        src[i, :n] = rng.integers(4, 13, n)
    return src


@pytest.mark.parametrize("attention,cell,bidirectional,extra", [
    ("none", "gru", False, ""), ("bahdanau", "lstm", True, ""), ("luong", "gru", True, ", score: dot"),
    ("luong", "rnn", False, ""), ("transformer", "", False, ""),
])
def test_step_by_step_decoding_gives_the_teacher_forced_logits(write_recipe, attention, cell, bidirectional, extra):
    """The one-step decoder, fed the same prefix token by token from the encoder's states, gives the logits
    the teacher-forced model gives at every position (each attention, cell, stacked, bidirectional; the
    Transformer's step attends over the cached keys and values it writes, one position a call)."""
    recipe, model = _model(write_recipe, attention, cell, bidirectional, extra)
    rng = np.random.default_rng(0)
    src = _sources(rng)
    target = np.zeros((3, 8), np.int32)
    target[:, 0] = 2
    target[:, 1:6] = rng.integers(4, 11, (3, 5))
    forced = np.asarray(model([src, target]))
    encoder, step = text_translation.architecture(recipe.model.arch).inference(model, recipe.model)
    out = [np.asarray(o) for o in encoder(src)]
    encoded, states = out[0], out[1:]
    for t in range(6):
        outs = step([target[:, t:t + 1], encoded, src, *states])
        np.testing.assert_allclose(np.asarray(outs[0])[:, 0], forced[:, t], atol=1e-4)
        states = [np.asarray(o) for o in outs[1:1 + len(states)]]


@pytest.mark.parametrize("score", ["additive", "dot", "general"])
def test_attention_weights_sum_to_one_over_the_source_and_are_zero_on_padding(score):
    layer = seq2seq.register()(score, None)
    rng = np.random.default_rng(1)
    query, values = rng.normal(size=(3, 4, 5)).astype("float32"), rng.normal(size=(3, 7, 5)).astype("float32")
    src = _sources(rng)
    context, weights = (np.asarray(t) for t in layer(query, values, src))
    real = src != 0
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(weights[np.broadcast_to(~real[:, None, :], weights.shape)] == 0)
    assert np.all(weights[np.broadcast_to(real[:, None, :], weights.shape)] > 0)
    np.testing.assert_allclose(context, weights @ values, atol=1e-5)
    # padding's encoder outputs do not reach the context: change them, the context stays
    values2 = values.copy()
    values2[~real] += 100.0
    np.testing.assert_allclose(np.asarray(layer(query, values2, src)[0]), context, atol=1e-4)


# ---------------------------------------------------------------- search


def _toy_step(prev, states):
    """A model whose best translation is known: after [START], A (4) has p 0.6 and B (5) 0.4; after A, the
    end has p 0.4 and A, B 0.3 each; after B, the end has p 0.9. Greedy writes A [END] (p 0.24); the best
    sentence is B [END] (p 0.36)."""
    table = {2: {4: 0.6, 5: 0.4}, 4: {3: 0.4, 4: 0.3, 5: 0.3}, 5: {3: 0.9, 4: 0.05, 5: 0.05}, 3: {3: 1.0}}
    logits = np.full((len(prev), 6), -1e9)
    for r, p in enumerate(prev):
        for tok, prob in table.get(int(p), {3: 1.0}).items():
            logits[r, tok] = np.log(prob)
    return logits, states, None


def test_beam_search_finds_the_best_sentence_where_greedy_does_not():
    g = decoding.greedy(_toy_step, [np.zeros((1, 1))], 1, 5)
    assert list(g.tokens[0, :2]) == [4, 3] and g.scores[0] == pytest.approx(np.log(0.24))
    b = decoding.beam(_toy_step, [np.zeros((1, 1))], 1, 2, 5)
    assert list(b.tokens[0, :2]) == [5, 3] and b.scores[0] == pytest.approx(np.log(0.36))
    assert np.all(b.tokens[0, 2:] == 0)


def test_beam_of_width_one_is_greedy(write_recipe):
    recipe, model = _model(write_recipe, "luong", "lstm", True)
    logits = model.get_layer("logits")
    logits.kernel.assign(np.asarray(logits.kernel) * 20)  # well-separated choices: no near-ties to round apart
    rng = np.random.default_rng(3)
    src = np.concatenate([_sources(rng) for _ in range(5)])  # 15 sentences in chunks of 4: the last padded
    stepper = decoding.Stepper(*seq2seq.inference(model, recipe.model), attention=True, rows=4)
    heard = []  # how far it is, for `dlkit evaluate`'s progress: the sentences decoded, a chunk at a time
    greedy = stepper.decode(src, 8, width=1, advance=heard.append)
    assert heard == [4, 4, 4, 3]
    rows = decoding.beam(lambda p, s: _step_fn(stepper, src[:4], p, s), _states(stepper, src[:4]), 4, 1, 8)
    np.testing.assert_array_equal(rows.tokens, greedy.tokens[:4])
    assert greedy.weights.shape[0] == 15


@pytest.mark.parametrize("attention,cell,bidirectional", [
    ("none", "gru", False), ("bahdanau", "lstm", True), ("luong", "rnn", False), ("transformer", "", False),
])
def test_the_greedy_model_writes_the_searchs_tokens(write_recipe, attention, cell, bidirectional):
    """decoding.greedy_model, the search as one Keras model (what `dlkit export` writes), gives the tokens the
    numpy greedy search gives for sources of several lengths, with sentences ending at different steps (END,
    then padding, while the others go on)."""
    import keras

    keras.utils.set_random_seed(0)  # the same weights whichever tests ran before in the process
    recipe, model = _model(write_recipe, attention, cell, bidirectional)
    logits = model.get_layer("logits")
    logits.kernel.assign(np.asarray(logits.kernel) * 20)  # well-separated choices: no near-ties to round apart
    src = np.concatenate([_sources(np.random.default_rng(k)) for k in range(3)])
    arch = text_translation.architecture(recipe.model.arch)
    encoder, step = arch.inference(model, recipe.model)
    # END's bias raised to halfway between the sentences' first-step margins (how far END is from the
    # likeliest token): about half the sentences end at the first step, and the others go on
    out = [np.asarray(o) for o in encoder.predict_on_batch(src)]
    first = np.asarray(step.predict_on_batch([np.full((len(src), 1), decoding.START, np.int32), out[0], src,
                                              *out[1:]])[0])[:, 0]
    logp = decoding.log_softmax(first.astype(np.float64))
    margin = np.sort(np.delete(logp, decoding.END, axis=1).max(axis=1) - logp[:, decoding.END])
    bias = np.asarray(logits.bias).copy()
    bias[decoding.END] += (margin[4] + margin[5]) / 2
    logits.bias.assign(bias)
    searched = decoding.Stepper(encoder, step, arch.step_weights(recipe.model), rows=9).decode(src, 8).tokens
    ended = [int(np.argmax(row == decoding.END)) if (row == decoding.END).any() else -1 for row in searched]
    assert 0 in ended and set(ended) != {0}, ended  # some ended at once, the others later (-1: not at all)
    np.testing.assert_array_equal(np.asarray(decoding.greedy_model(encoder, step, 8)(src)), searched)


def _states(stepper, src):
    out = stepper.encoder.predict_on_batch(src)
    return [np.asarray(s) for s in out[1:]]


def _step_fn(stepper, src, prev, states):
    encoded = np.asarray(stepper.encoder.predict_on_batch(src)[0])
    outs = [np.asarray(o) for o in stepper.step_model.predict_on_batch([prev[:, None], encoded, src, *states])]
    outs.pop()
    return outs[0][:, 0], outs[1:], None


def test_length_penalty_favours_longer_finished_hypotheses():
    """Raw scores pick the short sentence ([END] at once, p 0.55, against A A A [END], p 0.45 * 0.95 ** 2);
    GNMT's penalty with alpha 2 picks the longer one, whose per-token probability is higher."""
    table = {2: {3: 0.55, 4: 0.45}, 4: {4: 0.95, 3: 0.05}}

    def step(prev, states):
        logits = np.full((len(prev), 6), -1e9)
        for r, p in enumerate(prev):
            row = table.get(int(p), {3: 1.0}) if int(p) != 4 or states[0][r, 0] < 2 else {3: 1.0}
            for tok, prob in row.items():
                logits[r, tok] = np.log(prob)
        return logits, [states[0] + (prev == 4)[:, None]], None

    raw = decoding.beam(step, [np.zeros((1, 1))], 1, 3, 6, length_penalty=0.0)
    assert list(raw.tokens[0, :1]) == [3]
    long = decoding.beam(step, [np.zeros((1, 1))], 1, 3, 6, length_penalty=2.0)
    assert list(long.tokens[0, :4]) == [4, 4, 4, 3]


# ---------------------------------------------------------------- data


def test_the_split_keeps_every_source_sentence_on_one_side(write_recipe):
    recipe = tasks.load_recipe(write_recipe(f"""
name: split
data: {{dataset: tatoeba_fra_eng, dir: {DATA}, test_split: 0.2, validation_split: 0.2}}
model: {{arch: seq2seq, units: [4], embedding_dim: 4}}
"""))
    data = tasks.of(recipe).load_data(recipe)
    train, val, test = (set(data.context[s][0]) for s in ("train", "val", "test"))
    assert train and val and test
    assert not (train & test) and not (train & val) and not (val & test)
    raw = pairs.read_file(DATA / "tatoeba_fra_eng" / "fra.txt", 0, 1)
    every = {}
    for s, t in zip(raw.sources, raw.targets):
        if len(s.split()) <= 15 and len(t.split()) <= 15:
            every.setdefault(s, []).append(t)
    sources, refs = data.context["test"]
    assert any(len(r) > 1 for r in refs)  # sources with several translations keep them all as references
    for s, r in zip(sources, refs):
        assert r == every[s]
    # the test draw is the same for another seed; validation is the seed's
    other = tasks.load_recipe(write_recipe(f"""
name: split
seed: 7
data: {{dataset: tatoeba_fra_eng, dir: {DATA}, test_split: 0.2, validation_split: 0.2}}
model: {{arch: seq2seq, units: [4], embedding_dim: 4}}
"""))
    again = tasks.of(other).load_data(other)
    assert again.context["test"][0] == sources and set(again.context["val"][0]) != val
    # rows: source ids, then [START] target [END] padding; the model reads and predicts it shifted by one
    s_len, t_len = data.spec.target_shape
    assert data.splits.x_train.shape[1] == s_len + t_len + 1
    assert np.all(data.splits.x_train[:, s_len] == 2)


@pytest.mark.parametrize("level", ["word", "bpe"])
def test_tokenizers_give_the_text_back(level):
    texts = ["Va\u202f! L'homme, c'est « moi »...", "Il a 3,5 km à faire.", "Je t'aime.", "Où est-il ?"]
    codec = pairs.Codec.learn(texts * 3, level, False, 200, 1)
    for t in texts:
        assert codec.text(codec.ids(t)) == codec.normalize(t)
    assert codec.normalize("Va\u202f!") == "Va !"  # NFKC: the narrow no-break space is a space
    framed = codec.framed(["Je t'aime."], 8)[0]
    assert framed[0] == 2 and 3 in framed and codec.text(framed) == "Je t'aime."
    again = pairs.Codec.from_artifact(json.loads(json.dumps(codec.to_artifact())))
    assert again.ids(texts[0]) == codec.ids(texts[0])


def test_a_pairs_file_short_of_columns_names_its_line(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("Hello.\tBonjour.\nno tab here\n", encoding="utf-8")
    with pytest.raises(Exception, match=r"pairs.tsv:2: expected at least 2 tab-separated columns"):
        pairs.read_file(path, 0, 1)


def test_bleu_against_several_references():
    perfect = text_translation.corpus_scores(["le chat dort .", "bonjour"], [["le chat dort ."], ["salut", "bonjour"]])
    assert perfect["bleu"] == pytest.approx(100.0) and "nrefs:var" in perfect["signature"]["bleu"]
    worse = text_translation.corpus_scores(["le chien dort .", "bonsoir"], [["le chat dort ."], ["salut", "bonjour"]])
    assert worse["bleu"] < 50 and worse["chrf"] < perfect["chrf"]


def test_recipe_errors_name_the_key(write_recipe):
    with pytest.raises(RecipeError) as e:
        tasks.load_recipe(write_recipe("""
name: bad
data: {dataset: tsv, source_column: 1, target_column: 1}
model: {arch: seq2seq, attention: bahdanau, score: dot}
train: {beam_width: 0}
"""))
    text = str(e.value)
    for part in ("model", "score", "data.path", "source_column", "train.beam_width"):
        assert part in text


# ---------------------------------------------------------------- the recipes, end to end on the slice


@pytest.fixture(scope="module")
def luong_run(tmp_path_factory) -> dict:
    result = train(ROOT / "recipes" / "attention_luong_fra_eng.yaml", SMALL, runs_root=tmp_path_factory.mktemp("tr"))
    assert result["status"] == "completed"
    return result


def test_the_three_recipes_differ_only_in_their_attention():
    """The comparison is fair: the same data, split, model size and budget, one key apart (the step test
    above builds each attention; the Luong recipe trains end to end below)."""
    recipes = {name: tasks.load_recipe(ROOT / "recipes" / f"{name}.yaml") for name in RECIPES}
    dumped = {name: r.model_dump() for name, r in recipes.items()}
    for d in dumped.values():
        d.pop("name")
        d["model"].pop("attention")
        d["model"].pop("score")
    first = dumped[RECIPES[0]]
    assert all(d == first for d in dumped.values())
    assert [r.model.attention for r in recipes.values()] == ["none", "bahdanau", "luong"]


def test_finished_run_is_measured_on_decoded_text_and_reloads_the_same(luong_run, tmp_path):
    """The finished run's BLEU, its pictures, `dlkit evaluate --beam 1`, and `dlkit predict` in a fresh
    process translating the test sources exactly as the training process did."""
    from pathlib import Path

    from dlkit.evaluate import evaluate

    run = Path(luong_run["run_dir"])
    test = luong_run["test"]
    assert test["sentences"] == 40 and "greedy_bleu" in test and "tok:13a" in test["signature"]["bleu"]
    assert sum(b["sentences"] for b in test["bleu_by_length"].values()) == 40
    assert (run / "attention_maps.png").is_file() and (run / "bleu_by_length.png").is_file()
    greedy = evaluate(str(run), beam=1)
    assert greedy["decoding"] == "greedy" and greedy["bleu"] == pytest.approx(test["greedy_bleu"])
    from dlkit.errors import UsageError
    from dlkit.generate import predict

    with pytest.raises(UsageError, match=r"--beam is the beam's width: 1 \(greedy\) to 64.*received 100000"):
        predict(str(run), ["a cat"], beam=100000)  # was searched: 100,000 hypotheses a step
    sources = [e["source"] for e in test["examples"][:4]]
    cmd = [sys.executable, "-m", "dlkit.cli", "predict", str(run), "--json", "--plot", str(tmp_path / "a.png")]
    for s in sources:
        cmd += ["--text", s]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr  # TensorFlow's start-up log (absl, CUDA stubs) silenced
    answer = json.loads(out.stdout)
    assert [p["translation"] for p in answer["predictions"]] == [e["translation"] for e in test["examples"][:4]]
    assert (tmp_path / "a.png").stat().st_size > 0


def test_a_translation_run_is_measured_on_pairs_of_ones_own(luong_run, tmp_path):
    """evaluate --data: a pairs file in the recipe's columns, read through the run's tokenizers: its own test
    pairs written so score as its test split (greedy here), each source translated once against all its
    references; a pair longer than training's max_words is counted in a note."""
    import shutil

    from typer.testing import CliRunner

    from dlkit.cli import app

    run = shutil.copytree(luong_run["run_dir"], tmp_path / "run")  # the shared run stays as it was
    recipe = tasks.load_run_recipe(run / "recipe.yaml")
    sources, refs = tasks.of(recipe).load_data(recipe).context["test"]
    at = (recipe.data.source_column, recipe.data.target_column)
    lines = ["\t".join(s if c == at[0] else r for c in sorted(at)) for s, rs in zip(sources, refs) for r in rs]
    long = " ".join(["word"] * (recipe.data.max_words + 1))
    (tmp_path / "mine.txt").write_text("\n".join(lines) + "\n")
    out = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(tmp_path / "mine.txt"), "--beam", "1", "--json"])
    assert out.exit_code == 0, out.output
    ev, test = json.loads(out.stdout), luong_run["test"]
    assert ev["sentences"] == 40 and ev["references"] == test["references"] and "note" not in ev
    assert ev["decoding"] == "greedy" and ev["bleu"] == pytest.approx(test["greedy_bleu"])
    (tmp_path / "long.txt").write_text("\n".join(lines[:3] + ["\t".join([long, long])]) + "\n")
    out = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(tmp_path / "long.txt"), "--beam", "1", "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout)["note"].startswith("1 of the 4 pairs have a side longer than")
    assert {f"data:{tmp_path / 'mine.txt'}", f"data:{tmp_path / 'long.txt'}"} <= set(
        json.loads((run / "eval.json").read_text()))


def test_a_finished_run_exports_its_greedy_translation(luong_run, tmp_path):
    """Was exit 2 ("exporting that search is not built"): the export is the greedy search in the graph, token
    ids in and out; through the run's tokenizers it translates as `dlkit predict --beam 1` does."""
    from pathlib import Path

    import tensorflow as tf
    from typer.testing import CliRunner

    from dlkit import models
    from dlkit.cli import app
    from dlkit.rundir import RunDir

    run = RunDir.open(Path(luong_run["run_dir"]))
    for fmt, out in (("saved_model", tmp_path / "sm"), ("onnx", tmp_path / "t.onnx")):
        result = CliRunner().invoke(app, ["export", str(run.root), "--format", fmt, "--out", str(out), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["max_abs_diff"] == 0  # token ids: exactly the Keras model's
    recipe = tasks.load_run_recipe(run.recipe)
    source, target = text_translation.codecs(run)
    translator = text_translation.Translator(models.load(run.model, compile=False), recipe, source, target)
    texts = [e["source"] for e in luong_run["test"]["examples"][:4]]
    loaded = tf.saved_model.load(str(tmp_path / "sm"))  # held while serve runs: it owns the variables
    ids = loaded.serve(translator.ids(texts)).numpy()
    assert [target.text(row) for row in ids] == translator.translate(texts, 1, 0.0)[0]


@pytest.mark.slow  # the step test above checks the Transformer's decoding in `make test`; this is the whole path
def test_the_transformer_recipe_trains_decodes_and_draws_on_the_slice(tmp_path):
    result = train(ROOT / "recipes" / "transformer_fra_eng.yaml",
                   [f"data.dir={DATA}", "train.epochs=1", "train.steps_per_epoch=3", "model.d_model=16",
                    "model.ff_units=16", "data.limit=400", "data.test_limit=12", "train.beam_width=2"],
                   runs_root=tmp_path)
    test = result["test"]
    assert result["status"] == "completed" and test["sentences"] == 12 and "greedy_bleu" in test
    run = ROOT / result["run_dir"]
    assert (run / "attention_maps.png").stat().st_size > 0
