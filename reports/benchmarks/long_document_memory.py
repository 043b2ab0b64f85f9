"""Peak memory of training bpe:2k on one ~45 MB document (the default corpus's train split repeated).

    TOKLAB_CACHE_DIR=/tmp/benchcache python reports/benchmarks/long_document_memory.py 1048576

The argument is `toklab.segmenters.bpe.TRAIN_CHUNK_CHARS` (1048576 is the default).
"""
import sys, time, resource
import toklab.segmenters.bpe as bpe
from toklab.corpus import open_corpus
chunk = int(sys.argv[1])
bpe.TRAIN_CHUNK_CHARS = chunk
text = "\n".join(d.text for d in open_corpus("default").train())
doc = (text + "\n") * max(1, 50_000_000 // len(text.encode()))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
s = time.perf_counter()
seg = bpe.BPESegmenter.train([doc], 2000)
print({"chunk": chunk, "doc_mb": round(len(doc.encode()) / 1e6, 1), "rss_before_train_mib": base // 1024,
       "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "train_s": round(time.perf_counter() - s, 1), "vocab": seg.vocab_size})
