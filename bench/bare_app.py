"""The baseline: a bare Flask route that parses the JSON body, served like the portal.

``gunicorn bench.bare_app:app`` with the same workers; the upload script posts to it with the
same headers and bodies as to the portal.
"""

from flask import Flask, request

app = Flask(__name__)


@app.post("/api/v1/device/readings")
def readings():
    body = request.get_json()
    return {"accepted": len(body["readings"])}, 201


@app.get("/healthz")
def healthz():
    return {"status": "ok"}
