"""C{python -m twisted_tcpchat}: the C{tcpchat} client."""

from twisted_tcpchat.client import run

if __name__ == "__main__":
    run()
