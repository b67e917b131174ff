"""`engram bench serve` on the tiny model: every figure it prints is measured, including a team's
first answer with its adapter not loaded yet (the first-contact issue's latency targets)."""

from engram_training.serve_bench import run


def test_serve_bench_reports_rotation_and_a_cold_adapters_first_answer(team_env):
    out = run(team_env.settings, queries=2, max_tokens=4, capacity=8)
    assert out["base"]["qps"] > 0 and set(out["adapters"]) == {"1", "8", "32"}
    assert out["adapters"]["32"]["cache_misses"] > 0 and out["adapters"]["8"]["cache_misses"] == 0
    assert 0 < out["cold_adapter_first_token_s"] <= out["cold_adapter_answer_s"]
    assert out["rotation_8_vs_1"] > 0
