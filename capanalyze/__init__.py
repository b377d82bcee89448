"""capanalyze: explain stalled TCP connections from a packet capture.

    import capanalyze
    cap = capanalyze.load("capture.pcap")        # or a list: two vantages
    cap.stalls                                    # one row per stall, with evidence
    cap.flow(3).plot()                            # a timeline chart for the ticket
"""
__version__ = "0.1.0"

__all__ = ["Capture", "Flow", "load", "__version__"]


def __getattr__(name):
    # Imported on first use, so the command line can settle how pandas is imported
    # (see cli.main) before anything imports it.
    if name in ("Capture", "Flow", "load"):
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'capanalyze' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + ["Capture", "Flow", "load"])
