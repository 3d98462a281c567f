"""The tutorial's Flask API with every line of auth code removed.

Access rules live in config/routes.yaml and are enforced by the gateway in
front of this app; the app only sees requests the gateway allowed.
"""
from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/")
def public():
    return jsonify(msg="Hello world!")


@app.route("/user")
def user():
    return jsonify(msg="Hello user!")


@app.route("/admin")
def admin():
    return jsonify(msg="Hello admin!")
