"""The stack's service modules keep their contract (streamlab/stack/service.py): a new module that
forgets a port, reuses a name or a default port, or needs a service that does not exist fails here."""

from __future__ import annotations

import pytest

from streamlab.config import StackConfig
from streamlab.stack import registry
from streamlab.stack.service import Layer, Service


@pytest.fixture(params=["local", "cluster"])
def cfg(request, tmp_path):
    from streamlab.config import REPO

    ports = {key: default for key, (default, _) in registry.port_defaults().items()}
    return StackConfig(home=tmp_path / "var", ports=ports, profile=request.param, deps=REPO / ".deps")


def test_every_module_declares_its_ports_and_services():
    for module in registry.MODULES:
        assert isinstance(module.PORTS, dict), module.__name__
        assert callable(module.services), module.__name__


def test_port_keys_and_default_ports_are_unique_across_modules():
    keys = [key for module in registry.MODULES for key in module.PORTS]
    assert len(keys) == len(set(keys))
    defaults = [port for port, _ in registry.port_defaults().values()]
    assert len(defaults) == len(set(defaults))


def test_each_service_listens_only_on_ports_its_own_module_declares(cfg):
    for module in registry.MODULES:
        for svc in module.services(cfg):
            assert set(svc.ports) <= set(module.PORTS), (svc.name, module.__name__)


def test_names_are_unique_and_needs_exist_in_a_lower_layer(cfg):
    svcs = registry.services(cfg)
    by_name = {s.name: s for s in svcs}
    assert len(by_name) == len(svcs)
    for svc in svcs:
        assert isinstance(svc, Service) and isinstance(svc.layer, Layer)
        for needed in svc.needs:
            assert by_name[needed].layer < svc.layer, (svc.name, needed)


def test_start_order_follows_the_layers(cfg):
    names = [s.name for s in registry.services(cfg)]
    assert names[0] == "postgres"
    assert names.index("namenode") < min(i for i, n in enumerate(names) if n.startswith("datanode"))
    assert all(n.startswith("airflow-") for n in names[-4:])
    if cfg.cluster:
        assert {
            "kafka-1",
            "kafka-2",
            "kafka-3",
            "datanode-1",
            "datanode-2",
            "spark-master",
            "spark-worker",
        } <= set(names)
    else:
        assert not any(n.startswith("spark-") for n in names)


def test_config_files_are_written_from_the_declared_ports(cfg):
    from streamlab.stack import lifecycle

    lifecycle.write_configs(cfg)
    server = (
        cfg.conf_dir / "kafka" / ("server-1.properties" if cfg.cluster else "server.properties")
    ).read_text()
    assert f"listeners=PLAINTEXT://127.0.0.1:{cfg.ports['kafka']}," in server
    hdfs_site = (cfg.conf_dir / "hadoop" / "hdfs-site.xml").read_text()
    assert f"<value>127.0.0.1:{cfg.ports['namenode_rpc']}</value>" in hdfs_site
    assert (cfg.conf_dir / "spark" / "spark-defaults.conf").exists()
