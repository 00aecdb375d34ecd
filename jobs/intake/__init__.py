"""The intake: everything that decides whether a submission (an animation or a pose extraction) is
acceptable, and accepting it. ``api`` reads the HTTP body and calls in here; nothing here knows HTTP
beyond each refusal code's status (``engine.inputs.errors``).

============== ====================================================================================
``policy``     :class:`~jobs.intake.policy.Intake`: settings, limits (built once per process), URL fetching
``limits``     the service's limits table (the engine's bounds narrowed by the settings)
``animation``  ``check_animation``: every check of a ``POST /animations`` submission, in order
``extraction`` ``check_extraction``: every check of a ``POST /poses`` clip
``sources``    the one loader of a submitted file (upload, data URI, URL)
``images``     image and mask checks (sniffed, header-checked, bounded decode, re-encoded as PNG)
``videos``     driving-video checks (container sniffed, header and packets probed, no decoding)
``ssrf``       the SSRF guard for every URL fetched or posted to (inputs and webhooks)
``acceptance`` ``accept_job``/``accept_extraction``: quota, storage, record, queue message
============== ====================================================================================
"""
