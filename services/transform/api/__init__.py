"""HTTP routes of the transform service: schemas, transform runs and task chains, one module each."""

from __future__ import annotations

from fastapi import APIRouter

from services.transform.api import chains, schemas, transforms

router = APIRouter()
for _module in (schemas, transforms, chains):
    router.include_router(_module.router)
