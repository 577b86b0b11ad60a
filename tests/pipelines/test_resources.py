"""Every pipeline step requests and limits CPU and memory (none is BestEffort), sized per component in
pipelines/resources.py; only the step that fits the neural models takes the accelerator option, and only
through pipeline parameters, so that one uploaded pipeline serves CPU and GPU runs."""

import re

import pytest
import yaml
from kfp import compiler, dsl

from pipelines import PIPELINES, resources
from pipelines.compile import COMPILED
from tests.pipelines.conftest import REPO
from tests.pipelines.test_compile import COMPONENT_FILES, load_component

ACCELERATOR_PARAMETERS = {"trainer_accelerator_type": "STRING", "trainer_accelerator_count": "NUMBER_INTEGER",
                          "trainer_node_selector": "STRUCT", "trainer_tolerations": "LIST"}
UNITS = {"": 1, "m": 1e-3, "K": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(text) -> float:
    found = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(text))
    assert found and found.group(2) in UNITS, text
    return float(found.group(1)) * UNITS[found.group(2)]


def docs(name: str) -> list[dict]:
    return list(yaml.safe_load_all((COMPILED / f"{name}.yaml").read_text()))


def executors_by_component(doc: dict) -> dict[str, tuple[str, dict]]:
    """executor label -> (component name without KFP's -2/-3 suffix, container)."""
    out = {}
    for comp_name, comp in doc["components"].items():
        label = comp.get("executorLabel")
        if label:
            name = re.sub(r"-\d+$", "", comp_name.removeprefix("comp-"))
            out[label] = (name, doc["deploymentSpec"]["executors"][label]["container"])
    return out


def test_every_component_has_a_size():
    names = {load_component(path).component_spec.name for path in COMPONENT_FILES}
    assert names <= set(resources.SIZES), sorted(names - set(resources.SIZES))
    assert set(resources.ACCELERATED) <= set(resources.SIZES)
    for name, s in resources.SIZES.items():
        assert quantity(s.cpu_request) <= quantity(s.cpu_limit), name
        assert quantity(s.memory_request) <= quantity(s.memory_limit), name


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_step_requests_and_limits_cpu_and_memory_as_sized(name):
    doc = docs(name)[0]
    found = executors_by_component(doc)
    assert found
    for label, (component, container) in found.items():
        r = container.get("resources") or {}
        s = resources.SIZES[component]
        assert (r.get("resourceCpuRequest"), r.get("resourceCpuLimit"), r.get("resourceMemoryRequest"),
                r.get("resourceMemoryLimit")) == (s.cpu_request, s.cpu_limit, s.memory_request, s.memory_limit), label


@pytest.mark.parametrize("name", ["full", "train_and_promote"])
def test_only_the_specialists_take_the_accelerator_from_pipeline_parameters(name):
    spec, platform = docs(name)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {p: params[p]["parameterType"] for p in ACCELERATOR_PARAMETERS} == ACCELERATOR_PARAMETERS
    # the defaults ask for nothing: no accelerator, no node selector, no tolerations (a CPU run)
    assert [params[p].get("defaultValue") for p in ACCELERATOR_PARAMETERS] == ["", 1, {}, []]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    accelerated = []
    for label, (component, container) in executors_by_component(spec).items():
        accelerator = container.get("resources", {}).get("accelerator")
        placement = {k: v for k, v in k8s.get(label, {}).items() if k in ("nodeSelector", "tolerations")}
        if component not in resources.ACCELERATED:
            assert accelerator is None and not placement, label
            continue
        accelerated.append(label)
        assert accelerator == {
            "resourceType": "{{$.inputs.parameters['pipelinechannel--trainer_accelerator_type']}}",
            "resourceCount": "{{$.inputs.parameters['pipelinechannel--trainer_accelerator_count']}}"}, label
        assert placement == {"nodeSelector": {"nodeSelectorJson": {"componentInputParameter": "pipelinechannel--trainer_node_selector"}},
                             "tolerations": [{"tolerationJson": {"componentInputParameter": "pipelinechannel--trainer_tolerations"}}]} \
            or placement == {"nodeSelector": {"nodeSelectorJson": {"componentInputParameter": "trainer_node_selector"}},
                             "tolerations": [{"tolerationJson": {"componentInputParameter": "trainer_tolerations"}}]}, placement
    assert accelerated == ["exec-train-specialists"]


@dsl.component(base_image="python:3.11-slim")
def unsized_step() -> str:
    return "x"


def test_a_step_without_a_size_or_an_accelerator_row_is_refused(tmp_path):
    def unsized():
        resources.size(unsized_step())

    def wrongly_accelerated():
        resources.accelerate(unsized_step(), accelerator_type="nvidia.com/gpu", accelerator_count=1,
                             node_selector={}, tolerations=[])

    for body, error in ((unsized, KeyError), (wrongly_accelerated, ValueError)):
        with pytest.raises(error):
            compiler.Compiler().compile(dsl.pipeline(name="t")(body), str(tmp_path / "t.yaml"))


def test_the_sizes_are_documented_where_the_steps_are():
    readme = (REPO / "pipelines" / "README.md").read_text()
    assert "pipelines/resources.py" in readme and "trainer_accelerator_type" in readme
