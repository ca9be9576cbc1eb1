"""Training on a Dask cluster: the same run, on a worker elsewhere, with its events and adapters back here.

:mod:`.target` says which scheduler to reach and how (address or scheduler file, TLS through Dask's
``Security``); :mod:`.connect` reaches it and asks the workers what they have; :mod:`.blobs` sends
the store's files content-addressed, so a second run sends only what changed; :mod:`.worker_tasks`
holds what runs on a worker; :mod:`.remote_run` is the client side of a run, behind
``napari-sam-peft train --cluster``; :mod:`.slurm` starts workers as SLURM jobs (dask-jobqueue).
"""
