// Runs the shared scenarios in the page and leaves the results in window.testResults for the
// driving test (and in a table for the screenshot). The query string names the endpoint.
"use strict";
(async function () {
    const q = new URLSearchParams(location.search);
    const transport = q.get("transport");
    const endpoint = `${transport} -h ${q.get("host")} -p ${q.get("port")} -r / -t 60000`;
    document.getElementById("where").textContent = `${endpoint}, encoding ${q.get("encoding")}`;
    const results = [];
    const all = window.sessionScenarios.scenarios({
        Ice: window.Ice,
        Glacier2: window.Glacier2,
        omero: window.omero,
        endpoint,
        encoding: q.get("encoding"),
        user: q.get("user"),
        password: q.get("password"),
        otherUser: q.get("otherUser"),
        otherPassword: q.get("otherPassword"),
    });
    for (const s of all) {
        let row;
        try {
            await s.run();
            row = {name: s.name, status: "PASS", detail: ""};
        } catch (e) {
            row = {name: s.name, status: "FAIL", detail: String(e && e.stack || e)};
        }
        results.push(row);
        const tr = document.createElement("tr");
        for (const [text, cls] of [[row.name, ""], [row.status, row.status], [row.detail.split("\n")[0], ""]]) {
            const td = document.createElement("td");
            td.textContent = text;
            if (cls) {
                td.className = cls;
            }
            tr.appendChild(td);
        }
        document.getElementById("results").appendChild(tr);
    }
    const passed = results.filter(r => r.status === "PASS").length;
    document.getElementById("summary").textContent = `${passed} passed, ${results.length - passed} failed`;
    window.testResults = results;
})();
