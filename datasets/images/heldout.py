"""The study's one held-out partition, the same rule as datasets/heldout.c.

A key (a document id such as "wn:n:01313093" or "gcide:abacus", a fact such
as "fact:capital:Algeria", a country "country:Algeria") is held out when the
first 8 bytes of SHA-256("presight-heldout-v1:" + key), read big-endian,
modulo 1000, are below HELDOUT_PERMILLE. Held-out keys never reach the
pretraining shards (datasets/ingest.c drops those documents) nor the
instruction data; the evaluation's knowledge items are drawn from them.
tests/t_images.sh checks that both implementations agree.
"""
import hashlib

HELDOUT_PERMILLE = 150
SALT = "presight-heldout-v1:"


def bucket(key):
    d = hashlib.sha256((SALT + key).encode("utf-8")).digest()
    return int.from_bytes(d[:8], "big") % 1000


def heldout(key):
    return bucket(key) < HELDOUT_PERMILLE


# The namespaces whose documents ingest keeps out of the shards (heldout.c).
NAMESPACES = ("wn", "gcide", "country", "fact")


def heldout_document(doc_id):
    ns, colon, _ = doc_id.partition(":")
    return bool(colon) and ns in NAMESPACES and heldout(doc_id)


if __name__ == "__main__":  # keys on stdin -> "bucket heldout_document key" (the agreement test)
    import sys
    for line in sys.stdin:
        k = line.rstrip("\n")
        print(bucket(k), int(heldout_document(k)), k)
