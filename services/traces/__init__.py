"""``python -m services.traces``: read OTLP JSON trace exports and show where request time goes.

A tool for SREs, not a gRPC service: ``waterfall`` draws each request's spans as a tree with
text bars, ``summary`` ranks stages over many requests. Input is what the OpenTelemetry
Collector's ``file`` exporter writes (OTLP/JSON lines); :mod:`services.traces.otlp_file`
writes the same format without a collector.
"""
