"""The method registry: lookup, clear errors, and compress_model refusing missing statistics."""

from __future__ import annotations

import pydantic
import pytest
import torch

from bitprism.compression.apply import PLAIN, compress_model
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
    assert needed(PLAIN) == frozenset()
    assert Methods() == Methods(factoriser="whitened", pruner="obs", quantiser="gptq")
    assert needed(Methods(factoriser="fwsvd")) == {Stat.FISHER, Stat.INPUT_GRAM}
    rtn = Methods(factoriser="fwsvd", quantiser="rtn")
    assert needed(rtn, frozenset({MethodKind.QUANTISER})) == frozenset()


def test_unknown_names_are_refused_naming_the_registered_ones() -> None:
    with pytest.raises(pydantic.ValidationError, match="unknown pruner 'wanda'; registered: "):
        JobSpec(methods={"pruner": "wanda"})
    with pytest.raises(pydantic.ValidationError, match="extra"):
        Methods(rounding="gptq")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="registered twice"):
        register(MethodKind.QUANTISER, "rtn")(lambda *args: None)


def test_spec_round_trips_methods() -> None:
    spec = JobSpec(methods={"quantiser": "rtn", "factoriser": "fwsvd"})
    again = JobSpec.model_validate(spec.model_dump(mode="json"))
    assert again.methods == Methods(quantiser="rtn", factoriser="fwsvd", pruner="obs")
    assert str(again.methods) == "factoriser fwsvd, pruner obs, quantiser rtn"


def test_compress_model_refuses_a_data_aware_method_without_statistics(digits) -> None:
    layers = tuple(discover_layers(digits.model))
    int4 = Candidate.from_dict({"head.1": {"weight_bits": 4}})
    with pytest.raises(ValueError, match="'head.1': its methods .* need calibration statistics"):
        compress_model(digits.model, layers, int4, methods=Methods())
    # a method the choice does not use needs nothing: int4 with rtn runs no factoriser
    fwsvd = Methods(factoriser="fwsvd", quantiser="rtn")
    compressed, _ = compress_model(digits.model, layers, int4, methods=fwsvd)
    assert not torch.equal(compressed.get_submodule("head.1").weight, digits.model.head[1].weight)
