"""
Deferred-based client for qemud (and libvirtd) over libvirt's remote protocol.

    conn = await qemudclient.connect("qemud:///session", reactor)
    dom = await conn.define_xml(xml)
    await dom.start()
    await conn.close()

Every call returns a L{Deferred}; calls are pipelined on one connection.
Errors are L{qemudclient.errors.QemudClientError} subclasses named after
libvirt's error codes.
"""

__version__ = "0.1.0"
