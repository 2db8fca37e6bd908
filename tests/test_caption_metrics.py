"""The COCO caption metrics (lverse.metrics, python -m lverse eval-captions): known answers
worked out by hand, every metric against pycocoevalcap (the reference implementation, run
with its Java tokenizer and METEOR jar) on tests/fixtures/captions, both tokenizers (the
Stanford jar's and lverse's approximation), and each kind of bad input giving its one-line
error."""

import contextlib
import importlib.machinery
import importlib.util
import io
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lverse.__main__ import main
from lverse.metrics import (
    check_predictions,
    load_coco_references,
    load_coco_results,
    meteor_unavailable_reason,
    ptb_tokenizer,
    score_captions,
)
from lverse.metrics import meteor as meteor_module
from lverse.metrics.approx_tokenizer import approximate_ptb_tokens

FIXTURES = Path(__file__).parent / "fixtures" / "captions"
REFERENCES = FIXTURES / "references.json"
PREDICTIONS = FIXTURES / "predictions.json"
TOLERANCE = 1e-6
METRIC_NAMES = ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"]
APPROXIMATE = ptb_tokenizer.CaptionTokenizer("lverse's approximation")
NO_JAVA = "no java on PATH (Java runs the tokenizer and METEOR)"


def _skip_without_stanford():
    pytest.importorskip("pycocoevalcap", reason="pycocoevalcap is not installed (pip install 'pycocoevalcap>=1.2')")
    if shutil.which("java") is None:
        pytest.skip(NO_JAVA)


def _cli(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lverse", "eval-captions", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture(scope="module")
def cli_json():
    """``eval-captions --json`` on the fixture, METEOR included where it can run, as a
    function that waits for it. Started first: it runs its METEOR JVM while the reference
    runs pycocoevalcap's (each takes seconds)."""
    process = _cli("--references", REFERENCES, "--predictions", PREDICTIONS, "--json")
    done = []

    def result() -> subprocess.CompletedProcess:
        if not done:
            done.append(_finish(process))
        return done[0]

    yield result
    if process.returncode is None:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def reference(cli_json):
    """pycocoevalcap's scores of the fixture and its tokenized captions, evaluated as its
    example does: over the images of the results file. pycocoevalcap's tokenizer writes a
    temporary file into its package: fine for a test's reference, not for lverse."""
    _skip_without_stanford()
    pytest.importorskip("pycocotools", reason="pycocotools (pycocoevalcap's COCO reader) is not installed")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(REFERENCES))
        results = coco.loadRes(str(PREDICTIONS))
    ids = results.getImgIds()
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: coco.imgToAnns[i] for i in ids})
    res = tokenizer.tokenize({i: results.imgToAnns[i] for i in ids})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = dict(zip(["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"], bleu, strict=True))
    scores["METEOR"] = Meteor().compute_score(gts, res)[0]
    scores["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    return {"scores": scores, "gts": gts, "res": res}


# ---- known answers, by hand ------------------------------------------------------------


def test_bleu_rouge_known_answer():
    # Hypothesis "the cat sat" (3 words) against one 6-word reference: every 1-, 2- and
    # 3-gram matches, there is no 4-gram (0/0 becomes tiny/small = 1e-6), and the brevity
    # penalty is exp(1 - 6/3) = exp(-1).
    scores = score_captions({1: ["The cat sat on the mat."]}, {1: "The cat sat."}, meteor=False)
    assert scores["Bleu_1"] == pytest.approx(math.exp(-1), abs=1e-9)
    assert scores["Bleu_3"] == pytest.approx(math.exp(-1), abs=1e-9)
    assert scores["Bleu_4"] == pytest.approx(math.exp(-1) * 1e-6**0.25, abs=1e-9)
    # LCS 3: precision 1, recall 1/2, F with beta 1.2: 2.44 * 0.5 / (0.5 + 1.44).
    assert scores["ROUGE_L"] == pytest.approx(2.44 * 0.5 / 1.94, abs=1e-12)
    # One image: idf is log(1/1) = 0 for everything, so CIDEr is 0, as in pycocoevalcap.
    assert scores["CIDEr"] == 0.0


def test_cider_known_answer():
    # Two images, so idf = log 2 for n-grams of one image's references. Image 1 repeats its
    # reference: cosine 1 for unigrams and bigrams, 0 for the absent 3-/4-grams, mean 1/2,
    # times 10 = 5. Image 2 shares nothing: 0. The mean is 2.5.
    scores = score_captions({1: ["a b"], 2: ["c d"]}, {1: "a b", 2: "x y"}, meteor=False)
    assert scores["CIDEr"] == pytest.approx(2.5, abs=1e-12)


def test_cider_length_penalty_counts_bigrams():
    # Reference "a b c d" (3 bigrams), hypothesis "a b" (1): delta 2, penalty
    # exp(-4 / 72). Image 2 keeps the idf non-zero and scores 0.
    scores = score_captions({1: ["a b c d"], 2: ["e f"]}, {1: "a b", 2: "zzz"}, meteor=False)
    # Every n-gram of image 1's reference weighs log 2. Unigrams: 2 shared of 2 and 4,
    # cosine 2 / (sqrt 2 * sqrt 4); bigrams: 1 shared of 1 and 3, cosine 1 / sqrt 3.
    cosines = 2 / (math.sqrt(2) * 2) + 1 / math.sqrt(3)
    expected = cosines / 4 * 10 * math.exp(-4 / 72) / 2
    assert scores["CIDEr"] == pytest.approx(expected, abs=1e-12)


def test_bleu_closest_reference_length_ties_go_to_the_shorter():
    # 3 words between references of 2 and 4: the 2-word one counts, so no brevity penalty
    # (the 4-word one would give exp(1 - 4/3)).
    scores = score_captions({1: ["a b", "a b c d"]}, {1: "a b c"}, meteor=False)
    assert scores["Bleu_1"] == pytest.approx(1.0, abs=1e-9)


def test_cider_clips_repeated_ngrams():
    # "a a" against "a b": the unigram "a" weighs 2 log 2 in the hypothesis but is clipped
    # to the reference's log 2, so the unigram cosine is 1 / (2 sqrt 2), not 1 / sqrt 2;
    # no bigram is shared. Image 2 scores 0.
    scores = score_captions({1: ["a b"], 2: ["c d"]}, {1: "a a", 2: "x y"}, meteor=False)
    assert scores["CIDEr"] == pytest.approx(1 / (2 * math.sqrt(2)) / 4 * 10 / 2, abs=1e-12)


@pytest.mark.parametrize(
    "caption, tokens",
    [
        # clitics
        ("A man's dog", ["a", "man", "'s", "dog"]),
        ("Don't stop, it's here", ["do", "n't", "stop", ",", "it", "'s", "here"]),
        ("I'm sure they're in; we'll see", ["i", "'m", "sure", "they", "'re", "in", ";", "we", "'ll", "see"]),
        (
            "I've won, he'd go, can't, won't",
            ["i", "'ve", "won", ",", "he", "'d", "go", ",", "ca", "n't", ",", "wo", "n't"],
        ),
        ("shouldn't've", ["should", "n't", "'ve"]),
        ("The dogs' toys", ["the", "dogs", "'", "toys"]),
        ("the dog 's bone", ["the", "dog", "'s", "bone"]),
        ("ten o'clock in the '90s", ["ten", "o'clock", "in", "the", "'90s"]),
        ("We cannot go, gonna stay", ["we", "can", "not", "go", ",", "gon", "na", "stay"]),
        ("don\u2019t \u201cgo\u201d", ["do", "n't", "``", "go", "''"]),
        # punctuation, brackets, quotes
        ("A man riding a wave.", ["a", "man", "riding", "a", "wave", "."]),
        ("Wow!! Really?! Yes...", ["wow", "!!", "really", "?!", "yes", "..."]),
        (
            "An empty kitchen (lights on) [1] {a}",
            ["an", "empty", "kitchen", "-lrb-", "lights", "on", "-rrb-", "-lsb-", "1", "-rsb-", "-lcb-", "a", "-rcb-"],
        ),
        ("A sign says \"STOP\" and 'go'", ["a", "sign", "says", "``", "stop", "''", "and", "`", "go", "'"]),
        ("A healthy meal: rice & broccoli", ["a", "healthy", "meal", ":", "rice", "&", "broccoli"]),
        (
            "in the U.S. at 5 a.m. with Mr. Smith, etc.",
            ["in", "the", "u.s.", "at", "5", "a.m.", "with", "mr.", "smith", ",", "etc."],
        ),
        ("A letter B. and www.x.com.", ["a", "letter", "b.", "and", "www.x.com", "."]),
        # numbers
        (
            "At 10:30, 3.5 cars cost $1,000 or 50%",
            ["at", "10:30", ",", "3.5", "cars", "cost", "$", "1,000", "or", "50", "%"],
        ),
        (
            "3 1/2 pies, -5 degrees, .5 inch, 1890s",
            ["3", "1/2", "pies", ",", "-5", "degrees", ",", ".5", "inch", ",", "1890s"],
        ),
        ("a,b 1,b", ["a", ",", "b", "1", ",", "b"]),
        # hyphens and dashes
        (
            "A red-brick wall, a T-shirt, a 3-year-old",
            ["a", "red-brick", "wall", ",", "a", "t-shirt", ",", "a", "3-year-old"],
        ),
        (
            "tower -- built in 1890 --- under sky - yes",
            ["tower", "--", "built", "in", "1890", "--", "under", "sky", "-", "yes"],
        ),
        ("stop--go well- done \u2014 end", ["stop", "--", "go", "well", "-", "done", "--", "end"]),
        ("", []),
    ],
)
def test_approximate_tokenizer(caption, tokens):
    assert approximate_ptb_tokens(caption) == tokens


def test_approximate_tokenizer_drops_pycocoevalcap_punctuation():
    # As pycocoevalcap: its uppercase "-LRB-" never matches the lowercased token, so the
    # brackets stay; "!!" is not in its list either.
    assert APPROXIMATE.tokenize(["A man's dog (black) runs, fast!!", "...", 'Don\'t -- stop; "now"?']) == [
        "a man 's dog -lrb- black -rrb- runs fast !!",
        "",
        "do n't stop now",
    ]


def test_stanford_tokenizer_known_answers():
    _skip_without_stanford()
    tokenizer = ptb_tokenizer.caption_tokenizer()
    assert tokenizer.exact and tokenizer.description == "Stanford PTBTokenizer (pycocoevalcap's jar)"
    lines = [
        "A man's dog (black) runs, fast.",
        "Don't stop -- it's the U.S.",
        "The end...",
        "We cannot go; gonna stay!",
        'A sign: "KEEP OUT" on a T-shirt',
        "Lunch at 12:30 costs $5.50 & 3 1/2 pies.",
        "etc.",
        "A letter B.",
        "two\rlines\u2028here",
        "",
        "in Calif.",
        "The",
        "a.m. sun",
        "a",
        "",
    ]
    assert tokenizer.tokenize(lines) == [
        "a man 's dog -lrb- black -rrb- runs fast",  # the bracket tokens survive: PUNCTUATIONS has -LRB-
        "do n't stop it 's the u.s.",  # "U.S." before "The": "u.s." plus a removed "."
        "the end",
        "we can not go gon na stay",
        "a sign keep out on a t-shirt",
        "lunch at 12:30 costs $ 5.50 & 3\u00a01/2 pies",  # a fraction is one token, with a no-break space
        "etc.",  # before "A": "etc." plus a removed "."
        "a letter b.",  # a letter and its period are one token
        "two lines here",  # Java's other line breaks are spaces: one caption
        "",
        "in calif.",  # an abbreviation at a caption's end keeps its period
        "the",
        "a.m. sun",
        "a",
        "",  # a last empty caption keeps its line
    ]
    assert tokenizer.tokenize([]) == []


def test_approximate_tokenizer_agrees_with_stanford_on_the_fixture():
    """On the fixture's 154 captions (abbreviations, clitics, brackets, numbers, dashes
    among them), lverse's tokenizer gives the jar's tokens after the punctuation is dropped,
    so its scores are COCO's there."""
    _skip_without_stanford()
    references = load_coco_references(REFERENCES)
    predictions = load_coco_results(PREDICTIONS)
    for captions in ([c for refs in references.values() for c in refs], list(predictions.values())):
        assert APPROXIMATE.tokenize(captions) == ptb_tokenizer.caption_tokenizer().tokenize(captions)


# ---- against pycocoevalcap --------------------------------------------------------------


def test_every_metric_matches_pycocoevalcap(reference, cli_json):
    out = cli_json()
    assert out.returncode == 0, out.stderr
    ours = json.loads(out.stdout)
    expected = reference["scores"]
    assert meteor_unavailable_reason() is None
    assert ours["images"] == 24
    assert ours["tokenizer"] == "Stanford PTBTokenizer (pycocoevalcap's jar)" and ours["exact_tokenization"] is True
    assert list(expected) == METRIC_NAMES
    for name, value in expected.items():
        assert abs(ours[name] - value) <= TOLERANCE, (name, ours[name], value)
    # In-process too, without METEOR: the same numbers.
    in_process = score_captions(load_coco_references(REFERENCES), load_coco_results(PREDICTIONS), meteor=False)
    assert in_process.exact_tokenization and set(in_process) == set(METRIC_NAMES) - {"METEOR"}
    for name, value in in_process.items():
        assert abs(value - expected[name]) <= TOLERANCE, name


def test_tokenizer_matches_pycocoevalcap_on_the_fixture(reference):
    references = load_coco_references(REFERENCES)
    predictions = load_coco_results(PREDICTIONS)
    ids = [i for i in references if i in predictions]
    tokenizer = ptb_tokenizer.caption_tokenizer()
    assert tokenizer.exact
    assert tokenizer.tokenize(c for i in ids for c in references[i]) == [c for i in ids for c in reference["gts"][i]]
    assert tokenizer.tokenize(predictions[i] for i in ids) == [reference["res"][i][0] for i in ids]


def test_cli_json(cli_json):
    out = cli_json()
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert list(result)[:7] == METRIC_NAMES and result["images"] == 24
    tokenizer = ptb_tokenizer.caption_tokenizer()
    assert result["tokenizer"] == tokenizer.description and result["exact_tokenization"] is tokenizer.exact
    if meteor_unavailable_reason() is None:
        assert 0 < result["METEOR"] < 1 and "METEOR_unavailable" not in result
    else:
        assert result["METEOR"] is None and result["METEOR_unavailable"] == meteor_unavailable_reason()


# ---- Java's and pycocoevalcap's availability ---------------------------------------------


def _no_java(monkeypatch, tmp_path):
    # pycocoevalcap "is here", as a package of the files looked for (never run: no Java).
    root = tmp_path / "pycocoevalcap"
    for name in ("tokenizer/stanford-corenlp-3.4.1.jar", "meteor/meteor-1.5.jar", "meteor/data/paraphrase-en.gz"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).touch()
    spec = importlib.machinery.ModuleSpec("pycocoevalcap", None, is_package=True)
    spec.submodule_search_locations = [str(root)]
    _replace_pycocoevalcap(monkeypatch, spec)
    monkeypatch.setattr(shutil, "which", lambda name: None)


def _no_pycocoevalcap(monkeypatch, tmp_path):
    # Java "is here" (never started: both its users need pycocoevalcap's jars).
    _replace_pycocoevalcap(monkeypatch, None)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/java" if name == "java" else None)


def _replace_pycocoevalcap(monkeypatch, spec):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: spec if name == "pycocoevalcap" else real_find_spec(name, *a)
    )


MISSING = {
    "no java": (_no_java, "no java on PATH (METEOR is a Java program)", "no java on PATH"),
    "no pycocoevalcap": (
        _no_pycocoevalcap,
        "pycocoevalcap is not installed (pip install pycocoevalcap)",
        "pycocoevalcap is not installed",
    ),
}


def _approximate(reason: str) -> str:
    return (
        f"lverse's approximate PTB tokenizer (Java or pycocoevalcap missing: {reason}); "
        "scores may differ slightly from COCO's"
    )


@pytest.mark.parametrize("missing", MISSING)
def test_scores_say_what_is_missing(monkeypatch, tmp_path, missing):
    make_missing, meteor_reason, tokenizer_reason = MISSING[missing]
    make_missing(monkeypatch, tmp_path)
    assert meteor_unavailable_reason() == meteor_reason
    tokenizer = ptb_tokenizer.caption_tokenizer()
    assert not tokenizer.exact and tokenizer.description == _approximate(tokenizer_reason)
    scores = score_captions({1: ["a dog"], 2: ["a cat"]}, {1: "a dog", 2: "a cat"})
    assert set(scores) == set(METRIC_NAMES) - {"METEOR"}
    assert scores.exact_tokenization is False and scores.tokenizer == _approximate(tokenizer_reason)
    assert repr(scores).endswith(f"tokenizer={_approximate(tokenizer_reason)!r})")
    with pytest.raises(meteor_module.MeteorError, match=f"^METEOR is unavailable: {re.escape(meteor_reason)}$"):
        score_captions({1: ["a dog"]}, {1: "a dog"}, meteor=True)


@pytest.mark.parametrize("missing", MISSING)
def test_cli_table_says_what_is_missing(monkeypatch, tmp_path, capsys, missing):
    # In-process (python -m lverse's main), to spare a second interpreter start-up.
    make_missing, meteor_reason, tokenizer_reason = MISSING[missing]
    make_missing(monkeypatch, tmp_path)
    assert main(["eval-captions", "--references", str(REFERENCES), "--predictions", str(PREDICTIONS)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["metric", "value"]
    assert [line.split()[0] for line in lines[1:8]] == METRIC_NAMES
    assert lines[5] == f"METEOR   unavailable: {meteor_reason}"
    # lverse's tokenizer gives the jar's tokens on the fixture: pycocoevalcap's scores.
    assert lines[1] == "Bleu_1   0.807910"  # pycocoevalcap: 0.8079101767491113
    assert lines[7] == "CIDEr    1.629435"  # pycocoevalcap: 1.6294353623739777
    assert lines[8:] == [
        "(24 predicted images scored; 26 images have references)",
        f"tokenizer: {_approximate(tokenizer_reason)}",
    ]


# A JVM that cannot start prints these two lines and exits with 1.
_JVM_FAILURE = (
    "echo 'Error: Could not create the Java Virtual Machine.' >&2\necho 'Error: A fatal exception.' >&2\nexit 1"
)


@pytest.mark.parametrize(
    "fails, script, message",
    [
        (
            "the tokenizer",
            _JVM_FAILURE,
            "Stanford PTBTokenizer (java -cp stanford-corenlp-3.4.1.jar edu.stanford.nlp.process.PTBTokenizer "
            "-preserveLines -lowerCase) failed, exit status 1: Error: Could not create the Java Virtual Machine.",
        ),
        (
            "METEOR",
            f'case "$*" in *meteor*) {_JVM_FAILURE};; esac\nexec "$REAL_JAVA" "$@"',
            "METEOR (java -jar meteor-1.5.jar) stopped, exit status 1: Error: A fatal exception. "
            "(--no-meteor skips METEOR)",
        ),
    ],
    ids=["tokenizer", "meteor"],
)
def test_a_failing_java_is_an_error_not_a_missing_score(tmp_path, monkeypatch, capsys, fails, script, message):
    _skip_without_stanford()
    fake_java = tmp_path / "java"
    fake_java.write_text(f"#!/bin/sh\n{script}\n")
    fake_java.chmod(0o755)
    monkeypatch.setenv("REAL_JAVA", shutil.which("java"))
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert meteor_unavailable_reason() is None and ptb_tokenizer.caption_tokenizer().exact
    assert main(["eval-captions", "--references", str(REFERENCES), "--predictions", str(PREDICTIONS)]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err == f"lverse eval-captions: error: {message}\n"


# ---- bad input ---------------------------------------------------------------------------


def _write(tmp_path, name, content) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


REFS = {
    "images": [{"id": 1}, {"id": 2}],
    "annotations": [{"image_id": 1, "caption": "a dog"}, {"image_id": 2, "caption": "a cat"}],
}


@pytest.mark.parametrize(
    "load, content, message",
    [
        (load_coco_results, "[]", 'no predictions (an empty list); expected [{"image_id": ..., "caption": ...}, ...]'),
        (
            load_coco_results,
            '[{"image_id": 1, "caption": "a"}, {"image_id": 1, "caption": "b"}]',
            "image_id 1 is predicted twice (entries 0 and 1); expected one caption per image",
        ),
        (load_coco_results, '[{"image_id": 1, "caption": "a"},', "not valid JSON: Expecting value at line 1 column 34"),
        (
            load_coco_results,
            '{"annotations": []}',
            'expected a COCO results file, a JSON list of {"image_id": ..., '
            '"caption": ...}, got an object ({"annotations": []}); is it an '
            "annotations file?",
        ),
        (
            load_coco_results,
            '[{"image_id": 1}]',
            'entry 0 is an object ({"image_id": 1}); expected an object with "image_id" and "caption"',
        ),
        (
            load_coco_results,
            '[{"image_id": 1, "caption": 5}]',
            "entry 0 has a caption that is a number (5); expected a string",
        ),
        (
            load_coco_results,
            '[{"image_id": 1.0, "caption": "a"}]',
            "entry 0 image_id is a number (1.0); expected an integer or a string",
        ),
        (load_coco_results, None, "no such file"),
        (
            load_coco_references,
            '[{"image_id": 1, "caption": "a"}]',
            'expected a COCO captions annotations file, a JSON object with an "annotations" list, got a list '
            '([{"image_id": 1, "caption": "a"}]); is it a results file?',
        ),
        (load_coco_references, '{"annotations": []}', '"annotations" is empty; expected reference captions'),
        (
            load_coco_references,
            '{"images": [{"id": 1}], "annotations": [{"image_id": 2, "caption": "a"}]}',
            'annotations[0] is for image_id 2, which "images" does not list',
        ),
        (
            load_coco_references,
            "{",
            "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        ),
        (load_coco_references, None, "no such file"),
    ],
)
def test_bad_file(tmp_path, load, content, message):
    path = tmp_path / "file.json" if content is None else _write(tmp_path, "file.json", content)
    with pytest.raises(ValueError) as err:
        load(path)
    assert str(err.value) == f"{path}: {message}"


def test_predictions_for_unknown_images(tmp_path):
    refs = load_coco_references(_write(tmp_path, "refs.json", REFS))
    with pytest.raises(ValueError) as err:
        check_predictions(
            refs, {1: "a dog", 7: "x", 9: "y"}, references_name="refs.json", predictions_name="results.json"
        )
    assert str(err.value) == (
        "results.json: 2 predicted image id(s) not in refs.json: 7, 9; "
        "expected only images that have reference captions"
    )


def test_image_without_references(tmp_path):
    refs = load_coco_references(_write(tmp_path, "refs.json", {**REFS, "images": [{"id": 1}, {"id": 2}, {"id": 3}]}))
    with pytest.raises(
        ValueError,
        match="^the references: image 3 has no reference captions, but the predictions has a prediction for it$",
    ):
        score_captions(refs, {3: "a bird"}, meteor=False)


def test_a_string_is_not_a_list_of_references():
    with pytest.raises(TypeError, match="must be a list of strings"):
        score_captions({1: "a dog"}, {1: "a dog"}, meteor=False)


@pytest.mark.parametrize(
    "predictions, message",
    [
        (
            [{"image_id": 5, "caption": "a dog"}],
            "{results}: 1 predicted image id(s) not in {refs}: 5; expected only images that have reference captions",
        ),
        ([], '{results}: no predictions (an empty list); expected [{{"image_id": ..., "caption": ...}}, ...]'),
    ],
    ids=["unknown image", "empty"],
)
def test_cli_error_is_one_line(tmp_path, capsys, predictions, message):
    refs = _write(tmp_path, "refs.json", REFS)
    results = _write(tmp_path, "results.json", predictions)
    assert main(["eval-captions", "--references", str(refs), "--predictions", str(results), "--no-meteor"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == f"lverse eval-captions: error: {message.format(results=results, refs=refs)}\n"
