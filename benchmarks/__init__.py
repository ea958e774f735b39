"""
tcpchat's benchmark: a developer's tool, run from a checkout (it is not
part of the installed package)::

    .venv/bin/python -m benchmarks SCENARIO [OPTIONS]

from the repository root.  See C{docs/performance.md}.

    driver.py         the command: scenarios, servers, runs, tables
    loadgen.c         the epoll load generator (compiled with gcc at run time)
    relay.c           a trivial C broadcast relay, the limit a server could reach
    twisted_relay.py  a bare relay on Twisted's epoll reactor (C{--servers twisted})
    trace.py          ours with clocks on each stage of a reactor turn
                      (C{--servers traced})
    variant.py        ours with one speed shortcut, or one cost, taken out (a
                      C{--server} row)
    joins.py          the C{joins} scenario: one join+part in rooms of 5 to
                      5,000 members, in process (no server)
    metrics.py        the C{metrics} scenario's scraping and figures: what a
                      scrape of C{--metrics} costs; the C{scraped} row
"""
