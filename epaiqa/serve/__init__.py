"""``epaiqa serve`` and ``epaiqa app``: a finished run as a batching HTTP scoring server and a local web page.

One process holds one scorer (:func:`epaiqa.scoring.load.load_scorer`); requests of every client are queued and
scored together in batches (:mod:`epaiqa.serve.batcher`). The modules, one job each:

- :mod:`~epaiqa.serve.settings`: the settings and limits with their defaults, the API key rule;
- :mod:`~epaiqa.serve.errors`: the one JSON error shape ``{"error": ..., "field": ...}``;
- :mod:`~epaiqa.serve.guard`: the outer ASGI layer: API key, body size, request time, requests in flight;
- :mod:`~epaiqa.serve.inputs`: image references (upload, base64, path under ``--root``) to checked files;
- :mod:`~epaiqa.serve.parse`: ``/score`` and ``/rank`` request bodies (JSON or multipart) to scoring items;
- :mod:`~epaiqa.serve.batcher`: the bounded queue and the one worker that calls ``scorer.score_pairs``;
- :mod:`~epaiqa.serve.results`: a run's dimensions, answers shaped for clients, best-of-N ranking;
- :mod:`~epaiqa.serve.app`: the FastAPI routes and the static page (``static/``);
- :mod:`~epaiqa.serve.server`: binding the socket and running uvicorn (in the foreground or in a thread);
- :mod:`~epaiqa.serve.commands`: the ``serve`` and ``app`` subcommands.
"""
