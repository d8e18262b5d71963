"""`serve --metrics`: omero-py's logins, joins, calls and closes move the Prometheus
counters, scraped over plain HTTP on 127.0.0.1."""
import urllib.error
import urllib.request

import Glacier2
import pytest

from conftest import free_port, join, login, make_server, wait_until


@pytest.fixture(scope="module")
def metrics_server():
    port = free_port()
    srv = make_server('metrics = "127.0.0.1:%d"\n' % port)
    srv.metrics_url = "http://127.0.0.1:%d/metrics" % port
    yield srv
    srv.stop()


def scrape(srv):
    with urllib.request.urlopen(srv.metrics_url, timeout=20) as rsp:
        assert rsp.status == 200
        assert rsp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = rsp.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_counters_follow_omero_py(metrics_server, clients):
    srv = metrics_server
    before = scrape(srv)
    bad = srv.client()
    clients.append(bad)
    with pytest.raises(Glacier2.PermissionDeniedException):
        bad.createSession("alice", "not-the-password")
    c, sf = login(srv, clients, "alice")
    sf.getAdminService().getEventContext()
    uuid = c.getSessionId()
    join(srv, clients, uuid)
    after = scrape(srv)

    def moved(name):
        return after.get(name, 0) - before.get(name, 0)

    assert moved('omero_sessiond_logins_total{outcome="ok"}') == 1
    assert moved('omero_sessiond_logins_total{outcome="bad_password"}') == 1
    assert moved("omero_sessiond_session_joins_total") == 1
    assert after["omero_sessiond_sessions_live"] >= 1
    assert moved('omero_sessiond_connections_accepted_total{transport="ssl"}') >= 3
    assert after['omero_sessiond_connections_open{transport="ssl"}'] >= 2
    count = 'omero_sessiond_dispatch_duration_seconds_count{operation="getEventContext"}'
    assert moved(count) == 1
    inf = 'omero_sessiond_dispatch_duration_seconds_bucket{operation="getEventContext",le="+Inf"}'
    assert after[inf] == after[count]

    # Closing the session (both references) counts one close.
    for client in clients:
        client.closeSession()
    assert wait_until(lambda: scrape(srv)["omero_sessiond_session_closes_total"]
                      == before.get("omero_sessiond_session_closes_total", 0) + 1)


def test_only_metrics_is_served(metrics_server):
    url = metrics_server.metrics_url.replace("/metrics", "/other")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=20)
    assert e.value.code == 404
