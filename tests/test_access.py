"""Access levels: score-only, label-only, scikit-learn and HTTP (a real server on 127.0.0.1)."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

import robustlab as rl
from robustlab.models import HTTPError, HTTPModel, LabelOnly, QueryBudgetExceeded, ScoreOnly, SklearnModel
from robustlab.models.access import n_classes_of, predict


def _labels(net):
    return lambda x: net(x).argmax(1)


# -- callables ------------------------------------------------------------------------------
def test_score_only_counts_and_budget(net, batch):
    x, y = batch
    target = ScoreOnly(net, max_queries=30)
    assert torch.equal(target(x), net(x).detach())
    assert target.queries == 20 and target.remaining == 10
    assert not hasattr(target, "predict_labels")  # score access: evaluation arg-maxes the scores
    with pytest.raises(QueryBudgetExceeded, match="max_queries"):
        target(x)
    assert target.queries == 20  # refused calls send nothing
    assert n_classes_of(target, x[:1]) == 10


def test_label_only(net, batch):
    x, y = batch
    target = LabelOnly(_labels(net))
    assert torch.equal(target.predict_labels(x), net(x).argmax(1))
    assert torch.equal(predict(target, x), net(x).argmax(1))
    assert target.queries == 40
    with pytest.raises(TypeError, match="label-only"):
        target(x)
    assert n_classes_of(target, x[:1]) is None
    assert n_classes_of(LabelOnly(_labels(net), n_classes=10), x[:1]) == 10


@pytest.mark.parametrize("fn, match", [
    (lambda x: torch.zeros(x.shape[0], 10), "shape"),           # scores, not labels
    (lambda x: torch.full((x.shape[0],), 0.5), "integer"),
    (lambda x: torch.full((x.shape[0],), -1), "outside"),
])
def test_label_only_bad_outputs_name_fn(fn, match, batch):
    with pytest.raises(ValueError, match=f"fn.*{match}|{match}.*fn|fn"):
        LabelOnly(fn).predict_labels(batch[0][:3])


def test_bad_arguments_name_the_argument(batch):
    with pytest.raises(TypeError, match="fn"):
        ScoreOnly(3)
    with pytest.raises(ValueError, match="max_queries"):
        ScoreOnly(lambda x: x, max_queries=-1)
    with pytest.raises(ValueError, match="n_classes"):
        LabelOnly(lambda x: x, n_classes=1)
    with pytest.raises(ValueError, match="fn"):
        ScoreOnly(lambda x: torch.zeros(x.shape[0], 1))(batch[0][:2])
    with pytest.raises(ValueError, match="NaN"):
        ScoreOnly(lambda x: torch.full((x.shape[0], 3), float("nan")))(batch[0][:2])
    with pytest.raises(ValueError, match="x"):
        ScoreOnly(lambda x: torch.zeros(x.shape[0], 3))(batch[0][:2] + 2)


# -- scikit-learn ---------------------------------------------------------------------------
def test_sklearn_model(digits_clf):
    x, y = rl.data.load("digits", split="test", n=100)
    scores = SklearnModel(digits_clf)
    assert scores.access == "score" and scores.n_classes == 10
    s = scores(x)
    assert s.shape == (100, 10) and scores.queries == 100
    assert torch.equal(s.argmax(1), torch.from_numpy(digits_clf.predict(x.flatten(1).numpy())))
    assert float((s.argmax(1) == y).float().mean()) > 0.9
    labels = SklearnModel(digits_clf, access="label")
    assert torch.equal(labels.predict_labels(x), s.argmax(1))
    with pytest.raises(ValueError, match="x"):
        scores(torch.rand(2, 1, 28, 28))


def test_sklearn_bad_arguments(digits_clf):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    with pytest.raises(ValueError, match="estimator"):
        SklearnModel(LogisticRegression())  # not fitted
    with pytest.raises(TypeError, match="estimator"):
        SklearnModel(object())
    with pytest.raises(ValueError, match="input_shape"):
        SklearnModel(digits_clf, input_shape=(1, 28, 28))
    with pytest.raises(ValueError, match="access"):
        SklearnModel(digits_clf, access="white")
    xt, yt = rl.data.load("digits", split="train", n=200)
    svc = LinearSVC().fit(xt.flatten(1).numpy(), yt.numpy())
    assert SklearnModel(svc).access == "label"  # no predict_proba
    with pytest.raises(ValueError, match="access"):
        SklearnModel(svc, access="score")
    odd = LogisticRegression(max_iter=500).fit(xt.flatten(1).numpy(), yt.numpy() + 1)
    with pytest.raises(ValueError, match="classes_"):
        SklearnModel(odd)


# -- HTTP -----------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["list", "base64"])
def test_http_scores_exact(score_server, net, batch, encoding):
    x, _ = batch
    target = HTTPModel(score_server.url, access="score", batch_size=7, encoding=encoding)
    before = score_server.received
    out = target(x)
    # The server runs batches of 7, so kernels (and last bits) may differ from one batch of 20.
    assert torch.allclose(out, net(x).detach(), rtol=1e-5, atol=1e-5)
    assert torch.equal(out[:7], net(x[:7]).detach())  # float32 inputs and scores survive JSON exactly
    assert target.queries == 20 and score_server.received - before == 20
    assert target.requests == 3  # batches of 7, 7, 6
    assert target.n_classes == 10


def test_http_label_endpoint_never_reveals_scores(label_server, net, batch):
    x, _ = batch
    target = HTTPModel(label_server.url, access="label")
    assert torch.equal(target.predict_labels(x), net(x).argmax(1))
    with pytest.raises(TypeError, match="label-only"):
        target(x)
    sneaky = HTTPModel(label_server.url, access="score", retries=0)
    with pytest.raises(HTTPError, match="400.*label-only"):
        sneaky(x[:2])


def test_http_budget_is_never_exceeded(label_server, batch):
    x, _ = batch
    target = HTTPModel(label_server.url, access="label", max_queries=50, batch_size=8)
    before = label_server.received
    target.predict_labels(x)
    target.predict_labels(x)
    with pytest.raises(QueryBudgetExceeded, match="max_queries"):
        target.predict_labels(x)  # 60 > 50: refused before the first request
    assert target.queries == 40 and label_server.received - before == 40


def test_http_server_rejects_bad_requests(score_server):
    import urllib.request

    def post(body: bytes):
        req = urllib.request.Request(score_server.url, data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    assert post(b"not json")[0] == 400
    code, doc = post(json.dumps({"inputs": [[[[2.0] * 28] * 28]]}).encode())
    assert code == 400 and "[0, 1]" in doc["error"]
    code, doc = post(json.dumps({"inputs": [[[[0.0] * 5] * 5]]}).encode())
    assert code == 400 and "shape" in doc["error"]
    code, doc = post(json.dumps({"data": "@@", "shape": [1, 1, 28, 28]}).encode())
    assert code == 400 and "data" in doc["error"]


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first ``fail`` requests, then valid labels; or garbage, or hangs."""

    mode = "flaky"
    fail = 2
    seen = 0

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        n = len(body["inputs"])
        cls = type(self)
        cls.seen += 1
        if cls.mode == "hang":
            time.sleep(1.0)
        if cls.mode == "flaky" and cls.seen <= cls.fail:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        out = b"<html>oops</html>" if cls.mode == "garbage" else json.dumps(
            {"labels": [3] * n} if cls.mode != "short" else {"labels": [3] * (n - 1)}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


@pytest.fixture()
def flaky():
    handler = type("H", (_Flaky,), {"seen": 0})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    srv.handle_error = lambda *a: None  # the "hang" case: the client hangs up first
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield handler, f"http://127.0.0.1:{srv.server_address[1]}/predict"
    srv.shutdown()
    srv.server_close()


def test_http_retries_with_backoff_and_counts_retries(flaky, batch):
    handler, url = flaky
    x = batch[0][:4]
    target = HTTPModel(url, access="label", retries=3, backoff=0.01)
    assert torch.equal(target.predict_labels(x), torch.full((4,), 3))
    assert handler.seen == 3 and target.requests == 3
    assert target.queries == 12  # every attempt may have reached the model
    handler.seen = 0
    with pytest.raises(HTTPError, match="failed after 2 attempts.*503"):
        HTTPModel(url, access="label", retries=1, backoff=0.01).predict_labels(x)


def test_http_retries_respect_the_budget(flaky, batch):
    handler, url = flaky
    target = HTTPModel(url, access="label", retries=5, backoff=0.0, max_queries=10)
    with pytest.raises(QueryBudgetExceeded):
        target.predict_labels(batch[0][:4])  # 4 + 4 sent (both 503), a third try would make 12
    assert target.queries == 8 and handler.seen == 2


@pytest.mark.parametrize("mode, err, match", [
    ("garbage", ValueError, "url: bad response.*not JSON"),
    ("short", ValueError, "url: bad response.*shape"),
    ("hang", HTTPError, "timed out"),
])
def test_http_bad_responses_are_clear(flaky, batch, mode, err, match):
    handler, url = flaky
    handler.mode = mode
    with pytest.raises(err, match=match):
        HTTPModel(url, access="label", retries=0, timeout=0.3).predict_labels(batch[0][:3])


def test_http_bad_arguments_and_unreachable(batch):
    for kwargs, arg in [({"url": "ftp://x"}, "url"), ({"access": "white"}, "access"), ({"timeout": 0}, "timeout"),
                        ({"retries": -1}, "retries"), ({"batch_size": 0}, "batch_size"),
                        ({"encoding": "xml"}, "encoding"), ({"backoff": -1}, "backoff")]:
        args = {"url": "http://127.0.0.1:9/p", **kwargs}
        with pytest.raises(ValueError, match=arg):
            HTTPModel(**args)
    with pytest.raises(HTTPError, match="connection failed"):
        HTTPModel("http://127.0.0.1:9/p", retries=1, backoff=0.0).predict_labels(batch[0][:2])


# -- evaluation through the access levels --------------------------------------------------
def test_evaluate_label_only_over_http(label_server, net):
    x, y = rl.data.load("mnist", n=8)
    target = HTTPModel(label_server.url, access="label", encoding="base64")
    attack = rl.attacks.HopSkipJump("l2:4.0", max_queries=400)
    rep = rl.evaluate(target, x, y, rl.LpBall("l2", 4.0), attacks=[attack], diagnostics=False)
    assert rep.clean_accuracy == 1.0
    assert rep.robust_accuracy <= 0.5  # measured: 0.25 (1,142 queries in all)
    assert rep.forward_calls == target.queries  # the report counts what the endpoint received


def test_cli_evaluate_http_label(label_server, tmp_path, capsys):
    from robustlab.cli import main

    rc = main(["evaluate", "--model", label_server.url, "--access", "label", "--attacks", "hsj-300",
               "--threat", "l2:3", "--n", "4", "--no-diagnostics", "--save-config", str(tmp_path / "c.toml")])
    out = capsys.readouterr().out
    assert rc == 0 and "HopSkipJump-l2-300" in out
    rc = main(["evaluate", "--model", label_server.url, "--n", "4", "--no-diagnostics"])
    assert rc == 2 and "access" in capsys.readouterr().err
