from django.apps import AppConfig


class BenchFunctionsConfig(AppConfig):
    name = "benchmarks.functions"
    label = "bench_functions"
