"""Video data: synthetic shapes clips, TFDS builders, video files, grain pipeline.

Modules (import the one you need; only `shapes`, `transforms` and `video_io`
avoid importing TensorFlow):

* `config`: the `config.data` section, `data_config(name, ...)`.
* `shapes`: procedural coloured-shape clips and their captions.
* `video_io`: read/write MP4 and GIF, tile clips into a grid.
* `build`: `build_dataset` and `ensure_built` (TFDS, array_record).
* `pipeline`: `create_iterator` (grain), `create_eval_iterator` (every eval
  clip once, padded and masked), and `batched_iterator` for any
  random-access source.
* `manifest`: clip manifests (CSV/JSONL/Parquet rows of path, caption, time range).
* `clip_decode`: decode a time range by seeking (PyAV or ffmpeg); windows.
* `clip_examples`: a row -> its stored clips (shared by the local and Beam builds).
* `token_shards`: ArrayRecord token shards of a split (`videogen tokenize --config`).
"""
