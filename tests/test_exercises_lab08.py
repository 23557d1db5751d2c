"""Lab 08's exercises: reference answers pass, realistic wrong answers fail with a useful message,
and the placeholder is not attempted.

The checks run the learner's functions on small sessions built by ``lab08`` itself, so these
tests need no trained model; the notebook's strict run exercises the real digits CNN.
"""

import re

import numpy as np
import onnxruntime as ort
import pytest

from labsupport.checking import ____
from labsupport.exercises import lab08
from labsupport.testing import assert_check_failed, assert_check_passed, assert_check_unattempted, solution_answer

CPU = "CPUExecutionProvider"


# ---------------------------------------------------------------------------
# The models the checks use
# ---------------------------------------------------------------------------

def test_classifier_model_has_the_interface_of_the_notebooks_cnn():
    session = lab08.make_session(lab08.classifier_model())
    assert [(value.name, value.shape) for value in session.get_inputs()] == [("pixels", ["batch", 1, 8, 8])]
    assert [value.name for value in session.get_outputs()] == ["logits", "probabilities", "label"]
    logits, probabilities, labels = session.run(None, {"pixels": lab08.digit_images(3)})
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-6) and np.array_equal(labels, logits.argmax(axis=1))


def test_residual_model_loses_its_identity_before_nodes_are_assigned():
    session = lab08.make_session(lab08.residual_model(), record_assignments=True)
    op_types = [node.op_type for subgraph in session.get_provider_graph_assignment_info()
                for node in subgraph.get_nodes()]
    assert sorted(op_types) == ["Add", "Mul", "Relu", "Relu"]


# ---------------------------------------------------------------------------
# q1 SymbolicAxes
# ---------------------------------------------------------------------------

symbolic_axes = solution_answer(lab08.SymbolicAxes)


def test_symbolic_axes_reference_passes():
    assert_check_passed(lab08.SymbolicAxes, {"symbolic_axes": symbolic_axes})


def test_symbolic_axes_that_skips_unnamed_dimensions_fails():
    def names_only(session):
        return {value.name: {axis: size for axis, size in enumerate(value.shape) if isinstance(size, str)}
                for value in session.get_inputs()}

    assert_check_failed(lab08.SymbolicAxes, {"symbolic_axes": names_only},
                        "on a model with input image [None, 3, 'height', 'width']: the entry for 'image' lists axes")


def test_symbolic_axes_that_reads_the_outputs_fails():
    def from_outputs(session):
        return {value.name: {axis: size for axis, size in enumerate(value.shape) if not isinstance(size, int)}
                for value in session.get_outputs()}

    assert_check_failed(lab08.SymbolicAxes, {"symbolic_axes": from_outputs}, "expected one per graph input")


def test_symbolic_axes_that_lists_every_axis_fails():
    def every_axis(session):
        return {value.name: dict(enumerate(value.shape)) for value in session.get_inputs()}

    assert_check_failed(lab08.SymbolicAxes, {"symbolic_axes": every_axis}, "those whose size is not a fixed number")


def test_symbolic_axes_that_drops_inputs_without_symbols_fails():
    def symbolic_inputs_only(session):
        axes = symbolic_axes(session)
        return {name: found for name, found in axes.items() if found}

    assert_check_failed(lab08.SymbolicAxes, {"symbolic_axes": symbolic_inputs_only}, "'scale'")


def test_symbolic_axes_that_raises_is_reported_with_the_model():
    assert_check_failed(lab08.SymbolicAxes, {"symbolic_axes": lambda session: session.inputs},
                        "`symbolic_axes(session)` on the digits classifier")


def test_symbolic_axes_placeholder_is_not_attempted():
    assert_check_unattempted(lab08.SymbolicAxes)
    assert_check_unattempted(lab08.SymbolicAxes, {"symbolic_axes": lambda session: ____})


# ---------------------------------------------------------------------------
# q2 ChooseProviders
# ---------------------------------------------------------------------------

choose_providers = solution_answer(lab08.ChooseProviders)


def test_choose_providers_reference_passes():
    assert_check_passed(lab08.ChooseProviders, {"choose_providers": choose_providers})


def test_choose_providers_gives_a_session_without_warnings():
    from labsupport.runtime import request_providers

    wanted = [("TensorrtExecutionProvider", {"trt_fp16_enable": True}), ("CUDAExecutionProvider", {"device_id": 0})]
    attempt = request_providers(lab08.classifier_model(), choose_providers(wanted, ort.get_available_providers()))
    assert attempt.messages == [] and attempt.active == [CPU]


def test_choose_providers_in_the_order_of_available_fails():
    def by_availability(wanted, available):
        names = {(entry[0] if isinstance(entry, tuple) else entry): entry for entry in wanted}
        chosen = [names[name] for name in available if name in names]
        return chosen if CPU in [entry[0] if isinstance(entry, tuple) else entry for entry in chosen] \
            else chosen + [CPU]

    assert_check_failed(lab08.ChooseProviders, {"choose_providers": by_availability},
                        "wanting ['CUDAExecutionProvider', 'OpenVINOExecutionProvider']")


def test_choose_providers_that_drops_the_options_fails():
    def names_only(wanted, available):
        names = [entry[0] if isinstance(entry, tuple) else entry for entry in wanted]
        chosen = [name for name in names if name in available]
        return chosen if CPU in chosen else chosen + [CPU]

    assert_check_failed(lab08.ChooseProviders, {"choose_providers": names_only}, "should be a tuple of 2 items")


def test_choose_providers_that_always_appends_the_cpu_fails():
    def always_cpu(wanted, available):
        return [entry for entry in wanted if (entry[0] if isinstance(entry, tuple) else entry) in available] + [CPU]

    assert_check_failed(lab08.ChooseProviders, {"choose_providers": always_cpu}, "has 2 items; expected 1")


def test_choose_providers_that_forgets_the_cpu_fails():
    def no_cpu(wanted, available):
        return [entry for entry in wanted if (entry[0] if isinstance(entry, tuple) else entry) in available]

    assert_check_failed(lab08.ChooseProviders, {"choose_providers": no_cpu}, "has 2 items; expected 3")


def test_choose_providers_placeholder_is_not_attempted():
    assert_check_unattempted(lab08.ChooseProviders)
    assert_check_unattempted(lab08.ChooseProviders, {"choose_providers": lambda wanted, available: ____})


# ---------------------------------------------------------------------------
# q3 BindAndRun
# ---------------------------------------------------------------------------

bind_and_run = solution_answer(lab08.BindAndRun, ort=ort)


def test_bind_and_run_reference_passes():
    assert_check_passed(lab08.BindAndRun, {"bind_and_run": bind_and_run})


def test_bind_and_run_with_bind_cpu_input_passes():
    def with_cpu_input(session, images):
        binding = session.io_binding()
        binding.bind_cpu_input("pixels", images)
        binding.bind_output("probabilities", "cpu")
        binding.bind_output("label", "cpu")
        session.run_with_iobinding(binding)
        return binding

    assert_check_passed(lab08.BindAndRun, {"bind_and_run": with_cpu_input})


def test_bind_and_run_that_does_not_run_fails():
    def not_run(session, images):
        binding = session.io_binding()
        binding.bind_cpu_input("pixels", images)
        binding.bind_output("probabilities")
        binding.bind_output("label")
        return binding

    assert_check_failed(lab08.BindAndRun, {"bind_and_run": not_run}, "outputs were never computed")


def test_bind_and_run_that_binds_no_output_fails():
    def input_only(session, images):
        binding = session.io_binding()
        binding.bind_cpu_input("pixels", images)
        return binding

    assert_check_failed(lab08.BindAndRun, {"bind_and_run": input_only}, "the binding holds no outputs")


def test_bind_and_run_that_binds_every_output_fails():
    def all_outputs(session, images):
        binding = session.io_binding()
        binding.bind_cpu_input("pixels", images)
        for output in session.get_outputs():
            binding.bind_output(output.name)
        session.run_with_iobinding(binding)
        return binding

    assert_check_failed(lab08.BindAndRun, {"bind_and_run": all_outputs}, "holds 3 outputs; bind only probabilities")


def test_bind_and_run_in_the_wrong_order_fails():
    def label_first(session, images):
        binding = session.io_binding()
        binding.bind_cpu_input("pixels", images)
        binding.bind_output("label")
        binding.bind_output("probabilities")
        session.run_with_iobinding(binding)
        return binding

    assert_check_failed(lab08.BindAndRun, {"bind_and_run": label_first}, "in the order probabilities, label")


def test_bind_and_run_that_returns_the_outputs_fails():
    def outputs_instead(session, images):
        return bind_and_run(session, images).copy_outputs_to_cpu()

    assert_check_failed(lab08.BindAndRun, {"bind_and_run": outputs_instead}, "returned a list; return the binding")


def test_bind_and_run_with_float64_images_reports_the_runtime_error():
    def as_double(session, images):
        binding = session.io_binding()
        binding.bind_cpu_input("pixels", images.astype(np.float64))
        binding.bind_output("probabilities")
        binding.bind_output("label")
        session.run_with_iobinding(binding)
        return binding

    assert_check_failed(lab08.BindAndRun, {"bind_and_run": as_double}, "raised RuntimeError")


def test_bind_and_run_placeholder_is_not_attempted():
    assert_check_unattempted(lab08.BindAndRun)
    assert_check_unattempted(lab08.BindAndRun, {"bind_and_run": lambda session, images: ____})


# ---------------------------------------------------------------------------
# q4 NodesPerProvider
# ---------------------------------------------------------------------------

nodes_per_provider = solution_answer(lab08.NodesPerProvider)


def test_nodes_per_provider_reference_passes():
    assert_check_passed(lab08.NodesPerProvider, {"nodes_per_provider": nodes_per_provider})


def test_nodes_per_provider_counts_the_azure_provider_as_zero():
    session = lab08.make_session(lab08.classifier_model(), [lab08.AZURE, CPU], record_assignments=True)
    assert nodes_per_provider(session) == {lab08.AZURE: 0, CPU: 4}


def test_nodes_per_provider_without_zero_entries_fails():
    def assigned_only(session):
        counts = {}
        for subgraph in session.get_provider_graph_assignment_info():
            counts[subgraph.ep_name] = counts.get(subgraph.ep_name, 0) + len(subgraph.get_nodes())
        return counts

    assert_check_failed(lab08.NodesPerProvider, {"nodes_per_provider": assigned_only},
                        "has no entry for AzureExecutionProvider")


def test_nodes_per_provider_counting_operator_types_fails():
    def distinct_op_types(session):
        counts = {name: set() for name in session.get_providers()}
        for subgraph in session.get_provider_graph_assignment_info():
            counts[subgraph.ep_name] |= {node.op_type for node in subgraph.get_nodes()}
        return {name: len(op_types) for name, op_types in counts.items()}

    assert_check_failed(lab08.NodesPerProvider, {"nodes_per_provider": distinct_op_types},
                        "a residual block (Identity, Relu, Add, Relu, Mul) on the CPU: the count for "
                        "CPUExecutionProvider = 3 is too small")


def test_nodes_per_provider_with_one_node_per_provider_fails():
    def one_per_provider(session):
        return {name: 1 for name in session.get_providers()}

    assert_check_failed(lab08.NodesPerProvider, {"nodes_per_provider": one_per_provider}, "is too large")


def test_nodes_per_provider_with_a_made_up_provider_fails():
    def with_gpu(session):
        return {**nodes_per_provider(session), "CUDAExecutionProvider": 0}

    assert_check_failed(lab08.NodesPerProvider, {"nodes_per_provider": with_gpu},
                        "entries ['CUDAExecutionProvider'] that are not providers of this session")


def test_nodes_per_provider_placeholder_is_not_attempted():
    assert_check_unattempted(lab08.NodesPerProvider)
    assert_check_unattempted(lab08.NodesPerProvider, {"nodes_per_provider": lambda session: ____})


# ---------------------------------------------------------------------------
# q5 RequiredOperators
# ---------------------------------------------------------------------------

required_operators = solution_answer(lab08.RequiredOperators, re=re)


def test_required_operators_reference_passes():
    assert_check_passed(lab08.RequiredOperators, {"required_operators": required_operators})


def test_required_operators_reference_reads_a_real_converter_config(tmp_path):
    from labsupport.runtime import convert_to_ort_format

    model_path = tmp_path / "classifier.onnx"
    model_path.write_bytes(lab08.classifier_model())
    config = convert_to_ort_format(model_path, tmp_path / "ort", type_reduction=True)["Fixed"].config_path
    text = config.read_text()
    assert required_operators(text) == lab08.RequiredOperators.parsed_by_onnxruntime(text)
    assert ("ai.onnx", 13, "Gemm") in required_operators(text)


def test_required_operators_split_naively_on_commas_fails():
    def naive(config_text):
        required = set()
        for line in config_text.splitlines():
            if line.strip() and line[0] not in "#!":
                domain, opsets, operators = line.split(";", 2)
                for opset in opsets.split(","):
                    required |= {(domain, int(opset), name) for name in operators.split(",")}
        return required

    assert_check_failed(lab08.RequiredOperators, {"required_operators": naive},
                        "on the config whose first line is 'ai.onnx;13;ArgMax")
    assert_check_failed(lab08.RequiredOperators, {"required_operators": naive},
                        "item(s) that are not operators the config requires, for example ('ai.onnx', 13, ")


def test_required_operators_with_string_opsets_fails():
    def string_opsets(config_text):
        return {(domain, str(opset), op_type) for domain, opset, op_type in required_operators(config_text)}

    assert_check_failed(lab08.RequiredOperators, {"required_operators": string_opsets},
                        "for example ('ai.onnx', '11', 'Conv')")


def test_required_operators_ignoring_the_second_opset_fails():
    def first_opset_only(config_text):
        return {entry for entry in required_operators(config_text)
                if not (entry[1] == 12 and "11," in config_text)}

    assert_check_failed(lab08.RequiredOperators, {"required_operators": first_opset_only},
                        "on the config whose first line is 'ai.onnx;11,12;Add,Clip'")


def test_required_operators_that_keeps_comment_lines_reports_the_error():
    def with_comments(config_text):
        required = set()
        for line in config_text.splitlines():
            if line.strip():
                domain, opsets, operators = line.split(";", 2)
                required.add((domain, int(opsets), operators))
        return required

    assert_check_failed(lab08.RequiredOperators, {"required_operators": with_comments}, "raised ValueError")


def test_required_operators_placeholder_is_not_attempted():
    assert_check_unattempted(lab08.RequiredOperators)
    assert_check_unattempted(lab08.RequiredOperators, {"required_operators": lambda config_text: ____})


@pytest.mark.parametrize("problem", [problem for problem in lab08.PROBLEMS.values()
                                     if issubclass(problem, lab08.ThoughtExperiment)])
def test_review_questions_have_substantial_model_answers(problem):
    assert len(problem.solution.split()) > 80
