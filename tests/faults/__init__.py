"""The fault campaign: Kafka 3.9, the proxy, real ShareConsumers, and Toxiproxy between the
proxy and the cluster (``tests/faults/campaign.py``)."""
