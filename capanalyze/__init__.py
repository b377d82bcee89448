"""capanalyze: explain stalled TCP connections from a packet capture.

    import capanalyze
    cap = capanalyze.load("capture.pcap")        # or a list: two vantages
    cap.stalls                                    # one row per stall, with evidence
    cap.flow(3).plot()                            # a timeline chart for the ticket
"""
__version__ = "0.1.0"

from .api import Capture, Flow, load  # noqa: E402

__all__ = ["Capture", "Flow", "load", "__version__"]
