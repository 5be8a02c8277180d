"""The method registry: lookup, clear errors, and compress_model refusing missing statistics."""

from __future__ import annotations

import pydantic
import pytest
import torch

from bitprism.compression.apply import compress_model
from bitprism.compression.methods import MethodKind, Stat, get_method, method_names, needed
from bitprism.compression.methods.registry import register
from bitprism.config import JobSpec, Methods
from bitprism.spaces.candidate import Candidate
from bitprism.spaces.layer import discover_layers


def test_every_kind_has_its_plain_and_data_aware_methods() -> None:
    assert method_names(MethodKind.QUANTISER) == ("gptq", "rtn")
    assert method_names(MethodKind.PRUNER) == ("magnitude", "obs")
    assert method_names(MethodKind.FACTORISER) == ("fwsvd", "svd", "whitened")
    assert get_method(MethodKind.QUANTISER, "gptq").needs == {Stat.INPUT_GRAM}
    assert "Hessian error compensation" in get_method(MethodKind.QUANTISER, "gptq").summary
    assert needed(Methods()) == frozenset()
    assert needed(Methods(factoriser="fwsvd")) == {Stat.FISHER, Stat.INPUT_GRAM}
    assert needed(Methods(factoriser="fwsvd"), frozenset({MethodKind.QUANTISER})) == frozenset()


def test_unknown_names_are_refused_naming_the_registered_ones() -> None:
    with pytest.raises(pydantic.ValidationError, match="unknown pruner 'wanda'; registered: "):
        JobSpec(methods={"pruner": "wanda"})
    with pytest.raises(pydantic.ValidationError, match="extra"):
        Methods(rounding="gptq")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="registered twice"):
        register(MethodKind.QUANTISER, "rtn")(lambda *args: None)


def test_spec_round_trips_methods() -> None:
    spec = JobSpec(methods={"quantiser": "gptq", "factoriser": "whitened"})
    again = JobSpec.model_validate(spec.model_dump(mode="json"))
    assert again.methods == Methods(quantiser="gptq", factoriser="whitened")
    assert str(again.methods) == "factoriser whitened, pruner magnitude, quantiser gptq"


def test_compress_model_refuses_a_data_aware_method_without_statistics(digits) -> None:
    layers = tuple(discover_layers(digits.model))
    int4 = Candidate.from_dict({"head.1": {"weight_bits": 4}})
    with pytest.raises(ValueError, match="'head.1': its methods .* need calibration statistics"):
        compress_model(digits.model, layers, int4, methods=Methods(quantiser="gptq"))
    # a method the choice does not use needs nothing: int4 with fwsvd runs no factoriser
    compressed, _ = compress_model(digits.model, layers, int4, methods=Methods(factoriser="fwsvd"))
    assert not torch.equal(compressed.get_submodule("head.1").weight, digits.model.head[1].weight)
