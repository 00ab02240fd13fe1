"""JSON schemas of the share-group APIs (76-79, 90-92), loaded by ``proxy.messages``.

Each ``<ClassName>.json`` file is read by kafka-python's ``load_json`` when the class of the same
name is declared in ``proxy/messages.py``. The files are our own, written from the field tables of
Kafka's message schemas of the same names (field names, types and versions follow Apache Kafka's
protocol; the files and sentences are ours).
Whole-line ``//`` comments are allowed: the first block becomes the class's ``__license__``, the
second is appended to its ``__doc__``.
"""
