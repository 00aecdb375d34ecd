"""``DELETE /animations/{id}``: the client's erasure of one job (``jobs/deletion.py`` does the work)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from api.deps import JobId, Owner, ServicesDep
from api.errors import ApiError
from api.openapi import problems
from jobs.deletion import delete_job, was_deleted_by

router = APIRouter(prefix="/animations", tags=["animations"])


@router.delete(
    "/{job_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a job and its files",
    responses={204: {"description": "Deleted (also when it was already deleted)"}, **problems(401, 404, 429)},
)
async def delete_animation(job_id: JobId, services: ServicesDep, owner: Owner) -> Response:
    """Cancels the job if it is queued or running, then removes its inputs, outputs, the inversion-cache
    entries it recorded, and its record. Old links stop working. Deleting again answers 204; another
    key's job answers 404, exactly like a missing one."""
    store = services.store
    record = await run_in_threadpool(store.get_owned, job_id, owner)
    if record is None:
        if await run_in_threadpool(was_deleted_by, store, job_id, owner):
            return Response(status_code=204)
        raise ApiError("not_found", "no such animation")
    await run_in_threadpool(delete_job, record, services.jobs)
    return Response(status_code=204)
