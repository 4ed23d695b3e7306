"""The load engine's plan (checks and Locust's swarm form) and its client against a stand-in Locust."""

from __future__ import annotations

import pytest

from scalelab.load.engine import MAX_USERS, MIX_OPTIONS, LoadEngine, LoadEngineError, LoadPlan
from tests.unit.standins import CannedServer, closed_port

# ------------------------------------------------------------------ LoadPlan


def test_the_default_plan_is_valid():
    LoadPlan().validate()


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (LoadPlan(users=0), f"users must be from 1 to {MAX_USERS}"),
        (LoadPlan(users=MAX_USERS + 1), f"users must be from 1 to {MAX_USERS}"),
        (LoadPlan(rate=-1), "target req/s must be from 0"),
        (LoadPlan(rate=1e9), "target req/s must be from 0"),
        (LoadPlan(duration=-5), "duration must be from 0"),
        (LoadPlan(duration=10**9), "duration must be from 0"),
        (LoadPlan(mix_data_hot=0, mix_data_new=0, mix_process=0, mix_longtask=0), "at least one endpoint"),
        (LoadPlan(mix_process=-1), "at least one endpoint"),
        (LoadPlan(hot_keys=0), "hot keys must be from 1"),
        (LoadPlan(mix_process=10**12), "at least one endpoint"),
        (LoadPlan(model="half-open"), "the load model is one of closed, open"),
        (LoadPlan(model="open", rate=0), "the open model sends at a rate"),
        (LoadPlan(shape="sawtooth"), "the shape is one of constant, ramp, steps, spike"),
        (LoadPlan(shape="ramp", rate=10, peak_rate=50), "a ramp runs over the duration"),
        (LoadPlan(shape="spike", duration=30, rate=10), "a spike runs over the duration"),
        (LoadPlan(peak_rate=-1), "peak req/s must be from 0"),
    ],
)
def test_validate_says_what_is_wrong(plan, message):
    with pytest.raises(ValueError, match=message):
        plan.validate()


def test_validate_accepts_the_limits():
    LoadPlan(users=1).validate()
    LoadPlan(users=MAX_USERS, rate=0, duration=0).validate()
    LoadPlan(mix_data_hot=0, mix_data_new=0, mix_process=0, mix_longtask=1).validate()


def test_form_splits_the_rate_over_the_users_and_starts_them_at_once():
    form = LoadPlan(users=8, rate=100.0, mix_data_hot=60, mix_data_new=20, mix_process=15, mix_longtask=5).form(None)
    assert form == {
        "user_count": 8,
        "spawn_rate": 8,
        "hot_keys": 10,
        "rate_per_user": 12.5,
        "model": "closed",
        "shape": "constant",
        "peak_rate": 0.0,
        "shape_seconds": 0,
        "mix_data_hot": 60,
        "mix_data_new": 20,
        "mix_process": 15,
        "mix_longtask": 5,
    }


def test_an_open_shaped_plan_tells_the_engine_its_model_shape_peak_and_duration():
    plan = LoadPlan(users=4, rate=10, duration=60, model="open", shape="ramp", peak_rate=80)
    plan.validate()
    form = plan.form(None)
    assert (form["model"], form["shape"], form["peak_rate"], form["shape_seconds"]) == ("open", "ramp", 80, 60)
    assert form["run_time"] == "60s"


def test_form_rounds_the_rate_per_user():
    assert LoadPlan(users=3, rate=10.0).form(None)["rate_per_user"] == 3.333333


def test_a_rate_of_zero_means_as_fast_as_answers_come():
    assert LoadPlan(users=4, rate=0).form(None)["rate_per_user"] == 0


def test_run_time_only_when_a_duration_is_given():
    assert "run_time" not in LoadPlan(duration=0).form(None)
    assert LoadPlan(duration=90).form(None)["run_time"] == "90s"


def test_host_only_when_given():
    assert "host" not in LoadPlan().form(None)
    assert "host" not in LoadPlan().form("")
    assert LoadPlan().form("http://load-balancer:8000")["host"] == "http://load-balancer:8000"


# ------------------------------------------------------------------ LoadEngine


def test_start_posts_the_plan_to_swarm(server: CannedServer):
    server.json("POST", "/swarm", {"success": True, "message": "Swarming started"})
    LoadEngine(server.url + "/", timeout=1.0, target_host="http://127.0.0.1:8000").start(LoadPlan(users=5, rate=50))
    [seen] = server.seen
    assert (seen.method, seen.path) == ("POST", "/swarm")
    form = seen.form()
    assert form["user_count"] == "5"
    assert form["spawn_rate"] == "5"
    assert form["rate_per_user"] == "10.0"
    assert form["host"] == "http://127.0.0.1:8000"
    assert {option: form[option] for option in MIX_OPTIONS} == {
        "mix_data_hot": "70",
        "mix_data_new": "10",
        "mix_process": "15",
        "mix_longtask": "5",
    }


def test_start_checks_the_plan_before_asking_the_engine(server: CannedServer):
    with pytest.raises(ValueError, match="users must be"):
        LoadEngine(server.url, timeout=1.0).start(LoadPlan(users=0))
    assert server.seen == []


def test_start_raises_when_the_engine_refuses(server: CannedServer):
    server.json("POST", "/swarm", {"success": False, "message": "Host is required"})
    with pytest.raises(LoadEngineError, match="refused to start: Host is required"):
        LoadEngine(server.url, timeout=1.0).start(LoadPlan())


def test_stop_posts_to_stop(server: CannedServer):
    server.json("POST", "/stop", {"success": True, "message": "Test stopped"})
    LoadEngine(server.url, timeout=1.0).stop()
    assert [(seen.method, seen.path) for seen in server.seen] == [("POST", "/stop")]


def test_stats_returns_locusts_statistics(server: CannedServer):
    stats = {"state": "running", "user_count": 5, "total_rps": 49.5, "fail_ratio": 0.0, "stats": []}
    server.json("GET", "/stats/requests", stats)
    assert LoadEngine(server.url, timeout=1.0).stats() == stats


def test_an_error_status_raises_load_engine_error_naming_the_route(server: CannedServer):
    server.json("GET", "/stats/requests", {"error": "boom"}, status=500)
    with pytest.raises(LoadEngineError, match=f"the load engine at {server.url} did not answer GET /stats/requests"):
        LoadEngine(server.url, timeout=1.0).stats()


def test_a_non_json_answer_raises_load_engine_error(server: CannedServer):
    server.text("GET", "/stats/requests", "<html>not Locust</html>")
    with pytest.raises(LoadEngineError, match="did not answer GET /stats/requests"):
        LoadEngine(server.url, timeout=1.0).stats()


@pytest.mark.parametrize("call", ["stats", "stop", "start"])
def test_nothing_listening_raises_load_engine_error_naming_the_url(call):
    url = f"http://127.0.0.1:{closed_port()}"
    engine = LoadEngine(url, timeout=1.0)
    args = (LoadPlan(),) if call == "start" else ()
    with pytest.raises(LoadEngineError) as caught:
        getattr(engine, call)(*args)
    assert f"the load engine at {url} did not answer" in str(caught.value)
    assert "scalelab status" in str(caught.value)  # and says what to check
