"""An OPC UA server written by others (asyncua, from PyPI) for twin's tests.

Usage: opcua_server.py PORT [--user NAME:PASSWORD] [--items N] [--secure DIR [--secure-only]]

Serves opc.tcp://127.0.0.1:PORT/twin/ with SecurityPolicy None, anonymous and user-name login
(with --user). With --secure DIR it also serves Basic256Sha256 Sign and SignAndEncrypt, with a
certificate it makes in DIR (server.der, server.pem; kept across restarts); with --secure-only,
those alone (None stays for GetEndpoints only, as the specification allows), and user names
then travel encrypted for the server's key. This address space is under Objects:
  2:Plant/2:Press1/2:Force        Double, a sine around 250 every 100 ms, with EURange [0, 500]
                                  and EngineeringUnits kN (properties, as PLCs give them)
  2:Plant/2:Press1/2:Temperature  Double, 40..45, no properties
  2:Plant/2:Pump1/2:Flow          Float, 60..70
  2:Plant/2:Pump1/2:Running       Boolean
  2:Plant/2:Pump1/2:Pressure      Double whose StatusCode alternates Good / BadSensorFailure each second
  2:Plant/2:Bulk/2:Item0..N-1     Doubles (with --items N), for load
Prints 'ready PORT' on stdout once it serves; runs until killed.
"""
import asyncio
import math
import os
import socket
import sys
import time
from pathlib import Path

from asyncua import Server, ua
from asyncua.server.user_managers import UserManager
from asyncua.crypto.permission_rules import User, UserRole


class Users(UserManager):
    def __init__(self, user, password):
        self.user, self.password = user, password

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username is None:
            return User(role=UserRole.User)  # anonymous
        if username == self.user and password == self.password:
            return User(role=UserRole.User)
        return None


async def main():
    port = int(sys.argv[1])
    user = None
    items = 0
    secure = None
    secure_only = False
    args = sys.argv[2:]
    while args:
        if args[0] == "--user":
            user = args[1].split(":", 1)
            args = args[2:]
        elif args[0] == "--items":
            items = int(args[1])
            args = args[2:]
        elif args[0] == "--secure":
            secure = Path(args[1])
            args = args[2:]
        elif args[0] == "--secure-only":
            secure_only = True
            args = args[1:]
        else:
            raise SystemExit(f"unknown argument {args[0]}")
    server = Server(user_manager=Users(*user) if user else None)
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/twin/")
    server.set_server_name("twin test server")
    if secure:
        from asyncua.crypto.cert_gen import setup_self_signed_certificate
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID
        secure.mkdir(parents=True, exist_ok=True)
        uri = "urn:twin:test-server"
        server.set_server_name("twin test server")
        await server.set_application_uri(uri)
        await setup_self_signed_certificate(secure / "server.pem", secure / "server.der", uri, socket.gethostname(),
                                            [ExtendedKeyUsageOID.SERVER_AUTH], {"organizationName": "twin tests"})
        await server.load_certificate(str(secure / "server.der"))
        await server.load_private_key(str(secure / "server.pem"))
        policies = [ua.SecurityPolicyType.Basic256Sha256_Sign, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
        server.set_security_policy(policies if secure_only else [ua.SecurityPolicyType.NoSecurity] + policies)
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    server.set_identity_tokens([ua.AnonymousIdentityToken, ua.UserNameIdentityToken] if user else [ua.AnonymousIdentityToken])
    ns = await server.register_namespace("urn:twin:test")
    plant = await server.nodes.objects.add_folder(ns, "Plant")
    press = await plant.add_object(ns, "Press1")
    force = await press.add_variable(ua.NodeId("Press1.Force", ns), ua.QualifiedName("Force", ns), 250.0)
    await force.add_property(0, "EURange", ua.Variant(ua.Range(Low=0.0, High=500.0), ua.VariantType.ExtensionObject))
    await force.add_property(0, "EngineeringUnits", ua.Variant(
        ua.EUInformation(NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact", UnitId=4934476,
                         DisplayName=ua.LocalizedText("kN"), Description=ua.LocalizedText("kilonewton")),
        ua.VariantType.ExtensionObject))
    temperature = await press.add_variable(ns, "Temperature", 40.0)
    pump = await plant.add_object(ns, "Pump1")
    flow = await pump.add_variable(ns, "Flow", ua.Variant(60.0, ua.VariantType.Float))
    running = await pump.add_variable(ns, "Running", True)
    pressure = await pump.add_variable(ns, "Pressure", 3.0)
    bulk = []
    if items:
        folder = await plant.add_object(ns, "Bulk")
        for i in range(items):
            bulk.append(await folder.add_variable(ns, f"Item{i}", 0.0))
    async with server:
        print(f"ready {port}", flush=True)
        tick = 0
        while True:
            tick += 1
            t = time.time()
            await force.write_value(250.0 + 100.0 * math.sin(t))
            await temperature.write_value(40.0 + 5.0 * (tick % 10) / 10.0)
            await flow.write_value(ua.Variant(60.0 + (tick % 100) / 10.0, ua.VariantType.Float))
            await running.write_value(tick % 50 != 0)
            good = (tick // 10) % 2 == 0
            await pressure.write_value(ua.DataValue(
                ua.Variant(3.0 + (tick % 7) / 10.0, ua.VariantType.Double),
                StatusCode=ua.StatusCode(ua.StatusCodes.Good if good else ua.StatusCodes.BadSensorFailure)))
            for n, node in enumerate(bulk):
                await node.write_value(float(tick + n))
            await asyncio.sleep(0.1)


asyncio.run(main())
