"""A small API to put behind the gateway (README: "Protect your own app in five minutes").

Like upstream/app.py it has no auth code: it trusts that the gateway let the
request through, and reads who is calling from the X-Auth-Subject header.
"""
from flask import Flask, jsonify, request

app = Flask(__name__)
ORDERS = {7: {"id": 7, "item": "coffee"}}


@app.get("/health")
def health():
    return jsonify(ok=True)


@app.get("/orders")
def list_orders():
    return jsonify(orders=list(ORDERS.values()))


@app.post("/orders")
def create_order():
    order = {"id": max(ORDERS, default=0) + 1, "by": request.headers.get("X-Auth-Subject")}
    ORDERS[order["id"]] = order
    return jsonify(order), 201


@app.get("/reports")
def reports():
    return jsonify(orders=len(ORDERS))


@app.delete("/orders/<int:order_id>")
def delete_order(order_id: int):
    ORDERS.pop(order_id, None)
    return "", 204
